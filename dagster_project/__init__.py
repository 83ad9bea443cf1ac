"""Dagster definitions: the jobs, schedules and sensors that keep Vigil's store in shape."""
