"""rotator: scheduled key-rotation and cleanup worker for Gen3Workflow on AWS."""

__version__ = "0.1.0"
