"""``python -m creditzoo.sweep SWEEP_DIR RUN_NAME [--threads N] [--import MODULE] [--parent PID]``: one worker."""

from creditzoo.sweep.launch import main

if __name__ == "__main__":
    main()
