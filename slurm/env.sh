# xrobust job environment, sourced by every sbatch template (`xrobust slurm render` inlines it).
# Reads the settings block of the template: CONFIG, LAUNCHER, PROCS_PER_NODE, CPUS_PER_TASK,
# SOCKET_IFNAME, ENV_ACTIVATE, DS_ACCELERATOR, PYTHON, ENTRY, WORKDIR, JOB_DIR, RUN_ID, RESUME,
# MASTER_PORT.
#
# Nothing here assumes that the batch node's local disk is visible elsewhere: the job folder (entry
# file, hostfile, preemption marker) lies in JOB_DIR, by default the folder of CONFIG, which every
# rank on every node reads already.
#
# Preemption protocol: Slurm sends USR1 to this shell (--signal=B:USR1@N); the trap sends USR1 to
# every training rank; the ranks agree at a step boundary, write a checkpoint, rank 0 touches
# $XROBUST_PREEMPT_MARKER, and they exit 3; this script then runs `scontrol requeue`, and the
# requeued job (same job id, SLURM_RESTART_COUNT+1) passes --resume.

XR_PREEMPTED_EXIT_CODE=3

xr_log() { echo "[xrobust $(date +%H:%M:%S)] $*"; }

xr_setup() {
    cd "${WORKDIR:-${SLURM_SUBMIT_DIR:-.}}" || { xr_log "cannot cd to WORKDIR=$WORKDIR"; exit 1; }
    if [ -n "${ENV_ACTIVATE:-}" ]; then eval "$ENV_ACTIVATE" || { xr_log "ENV_ACTIVATE failed: $ENV_ACTIVATE"; exit 1; }; fi
    if [ -n "${DS_ACCELERATOR:-}" ]; then export DS_ACCELERATOR; fi
    # CPUs per rank. Every srun step gets them explicitly: since Slurm 22.05 srun no longer reads
    # SLURM_CPUS_PER_TASK, and a step would bind each rank to one CPU.
    XR_CPUS=${CPUS_PER_TASK:-${SLURM_CPUS_PER_TASK:-1}}
    # one OpenMP thread pool of the task's CPUs per rank: by default every rank sizes it to all the
    # cores of the node, and PROCS_PER_NODE ranks then oversubscribe it (slow start-up and CPU steps)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$XR_CPUS}
    # the network interface of the collectives (empty: NCCL and gloo choose one themselves)
    if [ -n "${SOCKET_IFNAME:-}" ]; then export NCCL_SOCKET_IFNAME=$SOCKET_IFNAME GLOO_SOCKET_IFNAME=$SOCKET_IFNAME; fi
    # DeepSpeed JIT-builds ops (on CPU: its shared-memory comm op, at every rank start) with the first
    # ninja on PATH. ninja 1.11 and >= 1.12 record command lines differently in .ninja_log, so
    # sharing one cache between two ninjas (a venv's and the system's) rebuilds the op on every
    # start while the other ranks wait on its lock: keep one cache per ninja version.
    if [ -z "${TORCH_EXTENSIONS_DIR:-}" ] && command -v ninja >/dev/null 2>&1; then
        export TORCH_EXTENSIONS_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/torch_extensions/ninja-$(ninja --version)
    fi
    PYTHON=${PYTHON:-python}
    mapfile -t XR_HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
    XR_NNODES=${#XR_HOSTS[@]}
    export MASTER_ADDR=${XR_HOSTS[0]}
    export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
    if [ -n "${RUN_ID:-}" ]; then
        XROBUST_RUN_ID=$RUN_ID${SLURM_ARRAY_TASK_ID:+-$SLURM_ARRAY_TASK_ID}
    elif [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
        XROBUST_RUN_ID=xr-$SLURM_ARRAY_JOB_ID-$SLURM_ARRAY_TASK_ID
    else
        XROBUST_RUN_ID=xr-$SLURM_JOB_ID
    fi
    export XROBUST_RUN_ID
    export XROBUST_RESTART_COUNT=${SLURM_RESTART_COUNT:-0}
    # the job folder: read by the ranks of every node (entry file) and written by rank 0, which need
    # not run on the batch node (preemption marker), so it must not be on a node-local disk
    XR_JOB_DIR=${JOB_DIR:-$(dirname "$CONFIG")}/xrobust-job-$SLURM_JOB_ID
    mkdir -p "$XR_JOB_DIR" || { xr_log "cannot create the job folder $XR_JOB_DIR (JOB_DIR=$JOB_DIR)"; exit 1; }
    trap xr_cleanup EXIT
    export XROBUST_PREEMPT_MARKER=$XR_JOB_DIR/preempted
    rm -f "$XROBUST_PREEMPT_MARKER"
    # one entry file for every launcher: the deepspeed slurm launcher can only start a script path
    XR_ENTRY_PY=$XR_JOB_DIR/entry.py
    cat > "$XR_ENTRY_PY" <<PYEOF
import runpy, sys
entry = "${ENTRY:-xrobust.cli}"
if entry.endswith(".py"):
    sys.argv[0] = entry
    runpy.run_path(entry, run_name="__main__")
else:
    runpy.run_module(entry, run_name="__main__", alter_sys=True)
PYEOF
    xr_log "job=$SLURM_JOB_ID${SLURM_ARRAY_TASK_ID:+ array_task=$SLURM_ARRAY_TASK_ID} restart=$XROBUST_RESTART_COUNT" \
        "nodes=${XR_HOSTS[*]} launcher=$LAUNCHER procs_per_node=$PROCS_PER_NODE cpus_per_task=$XR_CPUS" \
        "socket_ifname=${SOCKET_IFNAME:-default} master=$MASTER_ADDR:$MASTER_PORT run_id=$XROBUST_RUN_ID" \
        "job_dir=$XR_JOB_DIR"
    if [ "$XR_NNODES" -gt 1 ]; then
        local opened=("$XR_ENTRY_PY" "$CONFIG")
        if [[ ${ENTRY:-} == *.py ]]; then opened+=("$ENTRY"); fi
        xr_check_shared "${opened[@]}"
    fi
}

# Fail early, naming the node and the file, when a file that every rank opens is not readable on
# every node of the job.
xr_check_shared() {
    local missing rc
    missing=$(srun --ntasks="$XR_NNODES" --ntasks-per-node=1 --cpus-per-task=1 \
        bash -c 'for f; do [ -r "$f" ] || echo "$(hostname): cannot read $f"; done' xr_check_shared "$@")
    rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$missing" ]; then
        xr_log "not every node of the job can read the files that every rank opens (srun exit $rc):"
        printf '%s\n' "$missing"
        xr_log "they must be on a file system that all nodes share: set JOB_DIR (job folder) and CONFIG"
        exit 1
    fi
}

xr_cleanup() {
    rm -f "$XR_JOB_DIR/entry.py" "$XR_JOB_DIR/hostfile" "$XR_JOB_DIR/preempted"
    rmdir "$XR_JOB_DIR" 2>/dev/null
    return 0
}

# --resume when this is a requeued run (RESUME=auto), always (RESUME=always) or never.
xr_resume_flag() {
    case "${RESUME:-auto}" in
        always) echo "--resume" ;;
        never) ;;
        *) if [ "${SLURM_RESTART_COUNT:-0}" -gt 0 ]; then echo "--resume"; fi ;;
    esac
}

# The command line that starts PROCS_PER_NODE ranks on each node running "$XR_ENTRY_PY" "$@".
xr_command() {
    local nprocs=$((XR_NNODES * PROCS_PER_NODE))
    case "$LAUNCHER" in
        deepspeed)
            for h in "${XR_HOSTS[@]}"; do echo "$h slots=$PROCS_PER_NODE"; done > "$XR_JOB_DIR/hostfile"
            if [ "$XR_NNODES" -gt 1 ]; then
                # srun starts every rank; deepspeed does not set RANK/LOCAL_RANK there: the training
                # process maps them from SLURM_PROCID/SLURM_LOCALID (xrobust.launch.env).
                XR_CMD=(deepspeed --hostfile "$XR_JOB_DIR/hostfile" --launcher slurm --no_ssh_check --force_multi
                        --launcher_args "--kill-on-bad-exit=1 --ntasks-per-node=$PROCS_PER_NODE --cpus-per-task=$XR_CPUS"
                        --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" "$XR_ENTRY_PY" "$@")
            else
                XR_CMD=(deepspeed --num_gpus "$PROCS_PER_NODE" --no_local_rank
                        --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" "$XR_ENTRY_PY" "$@")
            fi ;;
        torchrun)
            # one torchrun per node: its task holds the CPUs of all the node's ranks
            XR_CMD=(srun --ntasks="$XR_NNODES" --ntasks-per-node=1 --cpus-per-task=$((XR_CPUS * PROCS_PER_NODE))
                    --kill-on-bad-exit=1 torchrun --nnodes "$XR_NNODES" --nproc_per_node "$PROCS_PER_NODE"
                    --rdzv_backend c10d --rdzv_endpoint "$MASTER_ADDR:$MASTER_PORT" --rdzv_id "$SLURM_JOB_ID"
                    --signals_to_handle SIGTERM,SIGINT,SIGUSR1 "$XR_ENTRY_PY" "$@") ;;
        srun)
            XR_CMD=(srun --ntasks="$nprocs" --ntasks-per-node="$PROCS_PER_NODE" --cpus-per-task="$XR_CPUS"
                    --kill-on-bad-exit=1 "$PYTHON" -u "$XR_ENTRY_PY" "$@") ;;
        *)
            xr_log "unknown LAUNCHER=$LAUNCHER (expected deepspeed, torchrun or srun)"; exit 1 ;;
    esac
}

# Send a signal to the training ranks (never to the launchers, whose default USR1 action is to die).
xr_signal_ranks() {
    local sig=$1 pids=() p
    # ranks under srun (srun, torchrun, multi-node deepspeed): Slurm signals every step process
    if [ "$LAUNCHER" != deepspeed ] || [ "$XR_NNODES" -gt 1 ]; then
        scancel --signal="$sig" "$SLURM_JOB_ID" 2>/dev/null
    fi
    # local ranks: descendants of the launcher whose argv runs the entry file
    local queue=("$XR_PID")
    while [ ${#queue[@]} -gt 0 ]; do
        p=${queue[0]}; queue=("${queue[@]:1}")
        for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do queue+=("$c"); pids+=("$c"); done
    done
    for p in "${pids[@]}"; do
        local argv
        argv=$(tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | head -3)
        if grep -qx -- "$XR_ENTRY_PY" <<< "$argv" && ! grep -q -- "torchrun\|deepspeed\|launch" <<< "$argv"; then
            kill -s "$sig" "$p" 2>/dev/null
        fi
    done
}

xr_on_signal() {
    xr_log "received $1: asking the ranks to checkpoint and stop"
    XR_SIGNALLED=$1
    xr_signal_ranks USR1
}

# Run the training/evaluation command; requeue the job when it checkpointed on preemption.
xr_run() {
    xr_command "$@"
    xr_log "exec: ${XR_CMD[*]}"
    XR_SIGNALLED=
    trap 'xr_on_signal USR1' USR1
    trap 'xr_on_signal TERM' TERM
    "${XR_CMD[@]}" &
    XR_PID=$!
    local rc
    while :; do
        wait "$XR_PID"; rc=$?
        if [ "$rc" -le 128 ] || ! kill -0 "$XR_PID" 2>/dev/null; then break; fi
    done
    if [ "$rc" -gt 128 ]; then  # the wait was cut by a trap just as the launcher ended
        wait "$XR_PID" 2>/dev/null; local again=$?
        [ "$again" -ne 127 ] && rc=$again
    fi
    trap - USR1 TERM
    xr_log "launcher exited with $rc${XR_SIGNALLED:+ after $XR_SIGNALLED}"
    if [ "$rc" -eq "$XR_PREEMPTED_EXIT_CODE" ] || { [ -n "$XR_SIGNALLED" ] && [ -e "$XROBUST_PREEMPT_MARKER" ]; }; then
        xr_log "checkpointed on preemption: requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID" || { xr_log "scontrol requeue $SLURM_JOB_ID failed"; exit 1; }
        exit "$XR_PREEMPTED_EXIT_CODE"
    fi
    return "$rc"
}
