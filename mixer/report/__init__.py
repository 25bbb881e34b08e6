"""Report: tables, summary statistics, claims, literature anchors and figures, built from
finished cells' files only (no model is loaded, no torch)."""
