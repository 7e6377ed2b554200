"""Alias package so that model code written for H2O's runtimes 2.0 imports unchanged."""
