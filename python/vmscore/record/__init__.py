"""Recording: the segment store on disk, its SQLite index, retention, evidence locks and export."""
