"""``python -m backend_stub``: same as the ``backend-stub`` command."""

from backend_stub.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    main()
