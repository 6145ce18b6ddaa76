#!/usr/bin/env bash
# Exercise a running local cluster (after up.sh): batch job, srun, a hard-crashing
# job seen as FAILED by sacct, and (when PYTHON has submitit) selfcheck.py.
#
#   PYTHON=.venv/bin/python slurm/localcluster/selfcheck.sh
set -uo pipefail

DIR=${AFD_SLURM_DIR:-/tmp/afd-slurm}
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
. "$DIR/env.sh" || { echo "no $DIR/env.sh: run up.sh first" >&2; exit 2; }
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d /tmp/afd-slurm-check.XXXXXX)
fail=0

ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*"; fail=1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# wait_state JOBID REGEX LIMIT: wait until sacct shows the job in a matching state
wait_state() {
    local job=$1 re=$2 end=$((SECONDS + $3)) st
    while [[ $SECONDS -lt $end ]]; do
        st=$(sacct -n -X -P -j "$job" -o State 2>/dev/null | head -n 1)
        [[ $st =~ $re ]] && { echo "$st"; return 0; }
        sleep 0.5
    done
    echo "${st:-none}"
    return 1
}

t=$(now)
job=$(sbatch --parsable -o "$WORK/hostname-%j.out" --wrap hostname)
if st=$(wait_state "$job" '^COMPLETED$' 30); then
    ok "sbatch --wrap hostname: job $job $st in $(since "$t")s, output: $(cat "$WORK/hostname-$job.out")"
else
    bad "sbatch --wrap hostname: job $job state $st"
fi

t=$(now)
if out=$(timeout 60 srun -n2 hostname 2>&1) && [[ $(wc -l <<<"$out") -eq 2 ]]; then
    ok "srun -n2 hostname in $(since "$t")s: $(echo $out)"
else
    bad "srun -n2 hostname: $out"
fi

t=$(now)
job=$(sbatch --parsable -o "$WORK/crash-%j.out" --wrap 'kill -9 $$')
if st=$(wait_state "$job" '^FAILED$' 30); then
    ok "hard crash (kill -9 \$\$): job $job $st in sacct after $(since "$t")s"
else
    bad "hard crash: job $job state $st after 30s"
fi

if "$PYTHON" -c 'import submitit' 2>/dev/null; then
    "$PYTHON" "$HERE/selfcheck.py" --folder "$WORK/submitit" || fail=1
else
    echo "skip submitit checks: $PYTHON cannot import submitit"
fi

rm -rf "$WORK"
exit $fail
