"""The pipeline after compile: probe live state -> plan -> apply -> verify."""
