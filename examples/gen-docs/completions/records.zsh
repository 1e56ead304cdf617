# Added by examples/gen-docs: the recorded ids and targets that
# `idmap-overlay complete-ids` prints, for a TARGET|ID argument. A
# --state-dir on the command line is honoured.
(( $+functions[_idmap-overlay_records] )) ||
_idmap-overlay_records() {
    local -a line_words records state_dir
    local i expl command
    line_words=(${(Q)${(z)LBUFFER}})
    i=${line_words[(I)--state-dir]}
    (( i > 0 && i < $#line_words )) && state_dir=(--state-dir "${line_words[i+1]}")
    i=${line_words[(I)--state-dir=*]}
    (( i > 0 )) && state_dir=(--state-dir "${line_words[i]#--state-dir=}")
    command=idmap-overlay
    (( $#state_dir )) && command+=" ${(j: :)${(@q)state_dir}}"
    records=(${(f)"$(_call_program records "$command complete-ids" 2>/dev/null)"})
    _wanted records expl 'recorded id or target' compadd -a records
}


# Added by examples/gen-docs: the column names @COLUMNS_SUBCOMMAND@'s column
# options take. With `list`, after those given already (up to the last
# comma) or a leading + (added to the default columns).
(( $+functions[_idmap-overlay_columns] )) ||
_idmap-overlay_columns() {
    local expl
    local -a columns=(@COLUMNS@)
    if [[ $1 == list ]]; then
        compset -P '*,' || compset -P '+'
    fi
    _wanted columns expl column compadd -a columns
}
