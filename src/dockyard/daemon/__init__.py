"""dockyardd: the process (main.py) and the API it serves (api/)."""
