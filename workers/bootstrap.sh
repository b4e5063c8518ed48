#!/usr/bin/env bash
# Prepare one machine as a vidcolor Ray node: venv, vidcolor + pinned Ray, CUDA check, ray start.
# Safe to rerun: the venv is reused, pip only changes what differs, `ray stop` precedes `ray start`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bootstrap.sh [options] PACKAGE

Install vidcolor on this machine and join it to a Ray cluster as a worker node.

PACKAGE is what pip installs: the repository folder, a wheel file, or a URL
(e.g. git+https://github.com/OWNER/vidcolor.git@v0.1.0).

Options:
  --head HOST[:PORT]   head node to join (port defaults to 6379); required unless --no-start
  --venv DIR           virtual environment to create or reuse (default: ~/vidcolor-venv)
  --python PY          interpreter for a new venv; Python 3.11+ and the SAME minor version
                       as the head and the driver (default: python3)
  --ray-version V      Ray to install; must equal the head's (default: 2.60.0)
  --constraints FILE   pip constraints file (e.g. constraints.txt for CPU-only torch)
  --token-file FILE    install this Ray auth token as ~/.ray/auth_token (mode 600)
  --num-gpus N         GPUs this node offers to Ray (default: Ray detects them)
  --cpu-ok             do not fail when torch sees no CUDA GPU (head node, CPU tests)
  --no-start           install and check only; do not run `ray start`
  -h, --help           show this help

Auth: Ray token authentication is switched on for the node (RAY_AUTH_MODE=token)
unless RAY_AUTH_MODE is already set in the environment. The token must be the
head's: ~/.ray/auth_token, --token-file, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN.
RAY_AUTH_MODE=disabled is for local experiments on a private machine only.

Example (on a GPU machine, token copied from the head beforehand):
  scp head:~/.ray/auth_token /tmp/ray_token
  ./bootstrap.sh --head 10.0.1.5 --token-file /tmp/ray_token \
      git+https://github.com/OWNER/vidcolor.git@v0.1.0
EOF
}

die() { echo "bootstrap.sh: error: $*" >&2; exit 1; }
say() { echo "bootstrap.sh: $*" >&2; }

head_addr=""
venv="${HOME}/vidcolor-venv"
python_bin="python3"
ray_version="2.60.0"
constraints=""
token_file=""
num_gpus=""
cpu_ok=0
start=1
package=""

while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --head) [[ $# -ge 2 ]] || die "--head needs a value"; head_addr="$2"; shift 2 ;;
        --venv) [[ $# -ge 2 ]] || die "--venv needs a value"; venv="$2"; shift 2 ;;
        --python) [[ $# -ge 2 ]] || die "--python needs a value"; python_bin="$2"; shift 2 ;;
        --ray-version) [[ $# -ge 2 ]] || die "--ray-version needs a value"; ray_version="$2"; shift 2 ;;
        --constraints) [[ $# -ge 2 ]] || die "--constraints needs a value"; constraints="$2"; shift 2 ;;
        --token-file) [[ $# -ge 2 ]] || die "--token-file needs a value"; token_file="$2"; shift 2 ;;
        --num-gpus) [[ $# -ge 2 ]] || die "--num-gpus needs a value"; num_gpus="$2"; shift 2 ;;
        --cpu-ok) cpu_ok=1; shift ;;
        --no-start) start=0; shift ;;
        --) shift; break ;;
        -*) die "unknown option: $1 (see --help)" ;;
        *) [[ -z "$package" ]] || die "only one PACKAGE, got '$package' and '$1'"; package="$1"; shift ;;
    esac
done
if [[ $# -gt 0 ]]; then
    [[ -z "$package" && $# -eq 1 ]] || die "only one PACKAGE (see --help)"
    package="$1"
fi

[[ -n "$package" ]] || { usage >&2; die "PACKAGE is required"; }
if [[ "$start" -eq 1 && -z "$head_addr" ]]; then
    die "--head HOST[:PORT] is required (or pass --no-start)"
fi
if [[ -n "$num_gpus" && ! "$num_gpus" =~ ^[0-9]+$ ]]; then
    die "--num-gpus must be a whole number, got '$num_gpus'"
fi
if [[ -n "$constraints" && ! -f "$constraints" ]]; then
    die "constraints file not found: $constraints"
fi
# A local path is resolved now, so a later `cd` or a relative venv cannot change its meaning.
if [[ -e "$package" ]]; then
    package="$(cd "$(dirname "$package")" && pwd)/$(basename "$package")"
fi

# --- venv -------------------------------------------------------------------------------------
if [[ ! -x "$venv/bin/python" ]]; then
    command -v "$python_bin" >/dev/null 2>&1 || die "interpreter not found: $python_bin"
    say "creating venv $venv with $python_bin"
    "$python_bin" -m venv "$venv"
fi
py="$venv/bin/python"
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
    || die "vidcolor needs Python 3.11+; $venv has $("$py" -V 2>&1)"
say "python: $("$py" -V 2>&1) in $venv"

# --- install ----------------------------------------------------------------------------------
pip_args=(install --upgrade-strategy only-if-needed)
[[ -n "$constraints" ]] && pip_args+=(-c "$constraints")
"$py" -m pip install --quiet --upgrade pip
# Ray is pinned here, not by vidcolor: every node and the driver must run the same Ray version.
say "installing $package with ray==$ray_version"
"$py" -m pip "${pip_args[@]}" "$package" "ray[default]==${ray_version}"

"$py" -c 'import vidcolor, av, cv2, ray; print("vidcolor", getattr(vidcolor, "__version__", "?"), "ray", ray.__version__)'

# --- GPU check --------------------------------------------------------------------------------
cuda="$("$py" -c 'import torch; print(torch.cuda.is_available())')"
say "torch.cuda.is_available(): $cuda"
if [[ "$cuda" == "True" ]]; then
    "$py" -c 'import torch; [print(f"  cuda:{i} {torch.cuda.get_device_name(i)}") for i in range(torch.cuda.device_count())]' >&2
elif [[ "$cpu_ok" -eq 0 ]]; then
    die "torch sees no CUDA GPU (driver missing, or a CPU-only torch was installed); pass --cpu-ok to accept a CPU node"
fi

# --- auth token -------------------------------------------------------------------------------
if [[ -n "$token_file" ]]; then
    [[ -s "$token_file" ]] || die "token file is missing or empty: $token_file"
    install -d -m 700 "$HOME/.ray"
    install -m 600 "$token_file" "$HOME/.ray/auth_token"
    say "installed the auth token as ~/.ray/auth_token"
fi

[[ "$start" -eq 1 ]] || { say "installed; not starting Ray (--no-start)"; exit 0; }

# A joining node does not turn token auth on by itself in Ray 2.60 (only `ray.init()` local
# clusters and a head that finds a token do), so say it explicitly unless the caller chose.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
if [[ "$RAY_AUTH_MODE" == "token" ]]; then
    if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
        say "auth: token from RAY_AUTH_TOKEN"
    elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
        [[ -s "$RAY_AUTH_TOKEN_PATH" ]] || die "RAY_AUTH_TOKEN_PATH points to a missing or empty file"
        say "auth: token from RAY_AUTH_TOKEN_PATH"
    elif [[ -s "$HOME/.ray/auth_token" ]]; then
        say "auth: token from ~/.ray/auth_token"
    else
        die "token auth is on but no token: copy the head's ~/.ray/auth_token (--token-file) or set RAY_AUTH_TOKEN"
    fi
else
    say "WARNING: RAY_AUTH_MODE=$RAY_AUTH_MODE: this node joins without authentication"
fi

[[ "$head_addr" == *:* ]] || head_addr="${head_addr}:6379"
ray_bin="$venv/bin/ray"
start_args=(start "--address=${head_addr}")
[[ -n "$num_gpus" ]] && start_args+=("--num-gpus=${num_gpus}")

ulimit -n 65536 2>/dev/null || say "could not raise the open-file limit (ulimit -n); continuing"
"$ray_bin" stop >/dev/null 2>&1 || true
say "ray ${start_args[*]}"
"$ray_bin" "${start_args[@]}"
say "joined $head_addr; check from the head with: ray status"
