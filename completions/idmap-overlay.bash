_idmap__overlay() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="idmap__overlay"
                ;;
            idmap__overlay,gc)
                cmd="idmap__overlay__subcmd__gc"
                ;;
            idmap__overlay,help)
                cmd="idmap__overlay__subcmd__help"
                ;;
            idmap__overlay,inspect)
                cmd="idmap__overlay__subcmd__inspect"
                ;;
            idmap__overlay,mount)
                cmd="idmap__overlay__subcmd__mount"
                ;;
            idmap__overlay,umount)
                cmd="idmap__overlay__subcmd__umount"
                ;;
            idmap__overlay__subcmd__help,gc)
                cmd="idmap__overlay__subcmd__help__subcmd__gc"
                ;;
            idmap__overlay__subcmd__help,help)
                cmd="idmap__overlay__subcmd__help__subcmd__help"
                ;;
            idmap__overlay__subcmd__help,inspect)
                cmd="idmap__overlay__subcmd__help__subcmd__inspect"
                ;;
            idmap__overlay__subcmd__help,mount)
                cmd="idmap__overlay__subcmd__help__subcmd__mount"
                ;;
            idmap__overlay__subcmd__help,umount)
                cmd="idmap__overlay__subcmd__help__subcmd__umount"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        idmap__overlay)
            opts="-v -q -h -V --state-dir --verbose --quiet --help --version mount umount gc inspect help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__gc)
            opts="-v -q -h -V --dry-run --json --foreign --min-age --timeout --metrics-file --state-dir --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --foreign)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --min-age)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --metrics-file)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__help)
            opts="mount umount gc inspect help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__help__subcmd__gc)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__help__subcmd__help)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__help__subcmd__inspect)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__help__subcmd__mount)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__help__subcmd__umount)
            opts=""
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__inspect)
            opts="-J -o -n -r -T -v -q -h -V --json --output --noheadings --raw --sort --width --no-trunc --list-columns --format --leaks --foreign --features --target-of --state --health --under --namespace --poll --first-only --timeout --state-dir --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --output)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --sort)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --width)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --format)
                    COMPREPLY=($(compgen -W "text json prometheus" -- "${cur}"))
                    return 0
                    ;;
                --foreign)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --target-of)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -T)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state)
                    COMPREPLY=($(compgen -W "mounted unmounted preparing unmounting detached" -- "${cur}"))
                    return 0
                    ;;
                --health)
                    COMPREPLY=($(compgen -W "ok elsewhere unknown running leaked gone" -- "${cur}"))
                    return 0
                    ;;
                --under)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__mount)
            opts="-o -v -q -h -V --lowerdir --upperdir --workdir --uidmap --gidmap --userns --userns-owner --options --strategy --allow-host-root --idmapped-upper --id --json --timeout --state-dir --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --lowerdir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --upperdir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --workdir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --uidmap)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --gidmap)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --userns)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --userns-owner)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --options)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                -o)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --strategy)
                    COMPREPLY=($(compgen -W "auto detached common-dir per-layer" -- "${cur}"))
                    return 0
                    ;;
                --id)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        idmap__overlay__subcmd__umount)
            opts="-a -v -q -h -V --all --state --health --under --namespace --dry-run --timeout --detach --state-dir --verbose --quiet --help --version"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --state)
                    COMPREPLY=($(compgen -W "mounted unmounted preparing unmounting detached" -- "${cur}"))
                    return 0
                    ;;
                --health)
                    COMPREPLY=($(compgen -W "ok elsewhere unknown running leaked gone" -- "${cur}"))
                    return 0
                    ;;
                --under)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --namespace)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=($(compgen -f "${cur}"))
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

# Added by examples/gen-docs: a TARGET|ID argument (umount|inspect) is
# completed with the recorded ids and targets that `idmap-overlay
# complete-ids` prints, and inspect's column options with the
# column names; everything else is clap_complete's _idmap__overlay.
_idmap__overlay_records() {
    local i word subcommand="" positionals=0 value_next=0 value_of="" state_dir=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if ((value_next)); then
            # bash splits --opt=value at '=' (COMP_WORDBREAKS): skip it too.
            [[ $word == "=" ]] && continue
            value_next=0
            [[ $value_of == --state-dir ]] && state_dir=(--state-dir "$word")
            continue
        fi
        case $word in
            --foreign|--format|--health|--namespace|--output|--sort|--state|--state-dir|--target-of|--timeout|--under|--width|-T|-o)
                value_next=1
                value_of=$word
                ;;
            -*) ;;
            *)
                if [[ -z $subcommand ]]; then
                    subcommand=$word
                else
                    ((positionals++))
                fi
                ;;
        esac
    done
    local cur=${COMP_WORDS[COMP_CWORD]}
    # Column names: after those a list option was given already (up to the
    # last comma) or a leading + (added to the default columns).
    if ((value_next)) && [[ $subcommand == inspect ]]; then
        local head=""
        case $value_of in
            -o | --output)
                [[ $cur =~ ^(\+|.*,) ]] && head=${BASH_REMATCH[0]}
                ;&
            --sort)
                COMPREPLY=($(compgen -P "$head" -W "ID TARGET STRATEGY LAYERS MAPS STATE AGE HEALTH UPPER WORK SOURCE MOUNTID DEV MOUNTNS ELSEWHERE PID CREATED KIND MOUNT PATH WHY ACTION" -- "${cur:${#head}}"))
                return 0
                ;;
        esac
    fi
    case $subcommand in
        umount|inspect)
            if ((!value_next && positionals == 0)) && [[ $cur != -* ]]; then
                local IFS=$'\n' word
                COMPREPLY=()
                # Quoted, so a target with a space stays one word.
                for word in $(compgen -W "$(command "$1" "${state_dir[@]}" complete-ids 2>/dev/null)" -- "$cur"); do
                    COMPREPLY+=("$(printf '%q' "$word")")
                done
                return 0
            fi
            ;;
    esac
    _idmap__overlay "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _idmap__overlay_records -o nosort -o bashdefault -o default idmap-overlay
else
    complete -F _idmap__overlay_records -o bashdefault -o default idmap-overlay
fi
