"""Helpers the methods share: argument checks, tensor conversion, exact T-space solvers."""
