"""Objectives: the ARDM model classes own training and likelihood."""
