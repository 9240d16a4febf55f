"""segment-connect-sync: keep Zendesk Connect supplied from a Segment warehouse."""

__version__ = "0.1.0"
