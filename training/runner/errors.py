"""Failures a person can act on, shared by training and inference (evaluation.inference.InferenceError)."""

from __future__ import annotations


class ActionableError(Exception):
    """A failure a person can act on: `code` for the program, `message` and `hint` in plain words."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class TrainingError(ActionableError):
    """A training failure a person can act on (see ActionableError)."""

    codes = (
        "config",
        "data",
        "model_missing",
        "model_corrupt",
        "task_unsupported",
        "out_of_memory",
        "disk_full",
        "qlora_unavailable",
    )


class ConfigError(TrainingError):
    """Settings that cannot be used; `errors` maps each field to a plain-words message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        fields = ", ".join(self.errors)
        message = " ".join(self.errors.values()) if len(self.errors) <= 3 else f"Check these settings: {fields}."
        super().__init__("config", message, "Change the settings named above and start again.")
