# Added by examples/gen-docs: a TARGET|ID argument (@SUBCOMMANDS@) is
# completed with the recorded ids and targets that `idmap-overlay
# complete-ids` prints, and @COLUMNS_SUBCOMMAND@'s column options with the
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
            @VALUE_OPTIONS@)
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
    if ((value_next)) && [[ $subcommand == @COLUMNS_SUBCOMMAND@ ]]; then
        local head=""
        case $value_of in
            @LIST_OPTIONS@)
                [[ $cur =~ ^(\+|.*,) ]] && head=${BASH_REMATCH[0]}
                ;&
            @ONE_OPTIONS@)
                COMPREPLY=($(compgen -P "$head" -W "@COLUMNS@" -- "${cur:${#head}}"))
                return 0
                ;;
        esac
    fi
    case $subcommand in
        @SUBCOMMANDS@)
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
