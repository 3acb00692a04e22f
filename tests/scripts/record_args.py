"""Stand-in for `xrobust.cli` in job-chain tests: appends `<job id> <host> <command line>` to
$RECORD_FILE, fails (exit 1) when the command line contains $FAIL_ON."""

import os
import socket
import sys

line = " ".join(sys.argv[1:])
with open(os.environ["RECORD_FILE"], "a") as f:
    f.write(f"{os.environ.get('SLURM_JOB_ID', '?')} {socket.gethostname()} {line}\n")
sys.exit(1 if os.environ.get("FAIL_ON") and os.environ["FAIL_ON"] in line else 0)
