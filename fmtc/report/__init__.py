"""Report stage: figures, tables, papermill notebooks and the book."""
