"""Worker processes: each loads its own copy of the model and scores batches sent over a Unix socket."""
