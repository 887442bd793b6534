"""HTML views for annotation."""
