"""Cells of CSV files people open in a spreadsheet program."""

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """Spreadsheet programs run cells that start with = + - @ (or tab/CR) as formulas: prefix a quote."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value
