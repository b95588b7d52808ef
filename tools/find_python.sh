#!/usr/bin/env bash
# Print the path of a Python >= 3.12 (jax 0.12 / flax 0.12.12 need it); 3.12 is preferred.
# Order: $PYTHON, python3.12 on PATH, pyenv's 3.12.x, then any newer python3.
set -u
ok() { "$1" -c 'import sys; sys.exit(not (3, 12) <= sys.version_info[:2] < (3, 14))' >/dev/null 2>&1; }
candidates=("${PYTHON:-}" "$(command -v python3.12 2>/dev/null)")
for d in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin /usr/local/bin /usr/bin; do
  candidates+=("$d/python3.12")
done
candidates+=("$(command -v python3.13 2>/dev/null)" "$(command -v python3 2>/dev/null)")
for p in "${candidates[@]}"; do
  if [ -n "$p" ] && [ -x "$p" ] && ok "$p"; then
    echo "$p"
    exit 0
  fi
done
echo "error: no Python 3.12 or 3.13 found. Install one (e.g. 'pyenv install 3.12') or run with PYTHON=/path/to/python3.12" >&2
exit 1
