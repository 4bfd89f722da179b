# shellcheck shell=bash
# Make the repo's .venv ready: `source scripts/bootstrap.sh` from the other scripts.
#
# Idempotent and fast on re-runs: the install is skipped while .venv/.wq-installed holds the
# sha256 of pyproject.toml. Exports WQ_REPO and puts .venv/bin first on PATH.
#
# Every step checks its own status and returns instead of exiting, because `set -e` is ignored
# inside functions called from `||` and an `exit` would close an interactive shell that sourced
# this file. The caller's `set -e` turns the failed `source` into its exit code.
# Exit codes: 69 (EX_UNAVAILABLE) when a prerequisite is missing, pip's code when install fails.

_wq_say() { printf 'bootstrap: %s\n' "$*" >&2; }

_wq_python_ok() {
    command -v python3 >/dev/null 2>&1 &&
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# `python3 -m venv --help` works even where Debian strips ensurepip, and then venv creation
# fails half-way; importing ensurepip is the real test.
_wq_venv_ok() { python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }

_wq_ensure_venv_module() {
    _wq_venv_ok && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        _wq_say "python3 venv support missing; installing python3-venv python3-pip via apt-get"
        apt-get update -q >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv python3-pip >/dev/null ||
            return 69
        _wq_venv_ok && return 0
    fi
    _wq_say "python3 cannot create virtual environments (no ensurepip)."
    _wq_say "Install it, then re-run:  sudo apt-get install -y python3-venv python3-pip"
    _wq_say "(elsewhere: install a python.org or pyenv build of Python >= 3.11)"
    return 69
}

_wq_sha256() {
    python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

# pip's -q still hides the context of a failure, so keep the full log and show it only then.
_wq_quiet() {
    local log rc=0
    log="$(mktemp)" || return 1
    "$@" >"$log" 2>&1 || rc=$?
    if [[ "$rc" != 0 ]]; then
        _wq_say "failed ($rc): $*"
        cat "$log" >&2
    fi
    rm -f "$log"
    return "$rc"
}

_wq_install() {
    local venv="$WQ_REPO/.venv" stamp="$WQ_REPO/.venv/.wq-installed" want
    want="$(_wq_sha256 "$WQ_REPO/pyproject.toml")" || return 1
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    _wq_say "installing workqueue (editable) and the dev group into .venv"
    # `--group` needs pip >= 25.1; upgrading here keeps re-runs offline and fast.
    _wq_quiet "$venv/bin/python" -m pip install -q --upgrade 'pip>=25.1' || return
    # --group resolves pyproject.toml relative to the working directory.
    (cd "$WQ_REPO" && _wq_quiet "$venv/bin/python" -m pip install -q -e . --group dev) || return
    printf '%s\n' "$want" >"$stamp"
}

_wq_bootstrap() {
    WQ_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    export WQ_REPO
    if ! _wq_python_ok; then
        _wq_say "need python3 >= 3.11 on PATH (found: $({ command -v python3 >/dev/null && python3 --version 2>&1; } || echo none))."
        _wq_say "Install it (apt: python3.11, or pyenv/python.org), then re-run."
        return 69
    fi
    # A venv whose interpreter vanished (e.g. pyenv version removed) is rebuilt, not patched.
    if [[ -d "$WQ_REPO/.venv" ]] && ! "$WQ_REPO/.venv/bin/python" -c '' >/dev/null 2>&1; then
        _wq_say "removing broken .venv"
        rm -rf "$WQ_REPO/.venv"
    fi
    if [[ ! -x "$WQ_REPO/.venv/bin/python" ]]; then
        _wq_ensure_venv_module || return
        _wq_say "creating .venv with $(python3 --version 2>&1)"
        _wq_quiet python3 -m venv "$WQ_REPO/.venv" || return
    fi
    _wq_install || return
    case ":$PATH:" in
        ":$WQ_REPO/.venv/bin:"*) ;;
        *) export PATH="$WQ_REPO/.venv/bin:$PATH" ;;
    esac
}

_wq_bootstrap || return
