"""scorer_core runtime for Hydrogen Torch models (hydrogen-torch-scorer): torch behind MLflow pyfunc."""
