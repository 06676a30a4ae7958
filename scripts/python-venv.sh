# shellcheck shell=bash
# Sourced by scripts/local-aws, scripts/tools and scripts/lock: find a Python of a given minor
# version and keep a project-local venv installed from a lock file of scripts/requirements/
# (every package pinned with its hashes, written by scripts/lock).

# find_python 3.13: prints the path of a Python 3.13 on PATH or under pyenv, else fails.
find_python() {
    local want="$1" candidate
    local check="import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)"
    for candidate in "python$want" python3; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$check" 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)/versions/$want"*/bin/python; do
            if [ -x "$candidate" ] && "$candidate" -c "$check" 2>/dev/null; then
                echo "$candidate"
                return 0
            fi
        done
    fi
    return 1
}

# ensure_venv DIR PYTHON_VERSION LOCK: (re)creates DIR from LOCK (--require-hashes: every
# package pinned, every download checked; --no-deps: the lock is the whole set) when LOCK
# changed since it was made; otherwise does nothing. uv installs (its parallel downloads take
# the tools' venv from minutes to seconds), itself installed by pip into .venv-lock from
# lock.txt, hash-checked too.
ensure_venv() {
    local venv="$1" version="$2" lock="$3"
    local stamp="$venv/.vigil-stamp" want py
    want="$(sha256sum "$lock" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    if ! py="$(find_python "$version")"; then
        printf '%s: Python %s was not found on PATH or under pyenv.\n' "$(basename "$0")" "$version" >&2
        printf 'Install it (for example "pyenv install %s", or python%s and python%s-venv from your distribution) and retry.\n' \
            "$version" "$version" "$version" >&2
        exit 1
    fi
    printf '%s: installing %s into %s with %s\n' "$(basename "$0")" "${lock#"$root"/}" "$venv" "$py" >&2
    local lock_venv="$root/.venv-lock"
    if [ "$venv" != "$lock_venv" ]; then
        ensure_venv "$lock_venv" 3.12 "$root/scripts/requirements/lock.txt"
    fi
    rm -rf "$venv"
    "$py" -m venv "$venv"
    if [ "$venv" = "$lock_venv" ]; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps -r "$lock"
    else
        "$lock_venv/bin/uv" pip install --quiet --python "$venv/bin/python" --require-hashes --no-deps -r "$lock"
    fi
    echo "$want" >"$stamp"
}
