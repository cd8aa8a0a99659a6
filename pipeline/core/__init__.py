"""What every stage shares: typed params, output paths, user errors, atomic writes and PNG figures."""
