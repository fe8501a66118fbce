import sys

print(f"Hello from Python {sys.version.split()[0]} inside a nixdocker image")
