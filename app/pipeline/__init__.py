"""The upload wing: confirming an upload (whoever asks), the worker that S3's
notifications drive, and rendering variants within a budget."""
