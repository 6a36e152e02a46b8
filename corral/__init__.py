"""Corral: a supervised runtime for LLM agents."""
