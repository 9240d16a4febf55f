"""SQLAlchemy access to the Segment warehouse schema, and the job's own state store."""
