"""The leasing API (FastAPI); reads only published price sheets. Not built yet."""
