# Added by examples/gen-docs: a TARGET|ID argument is completed with the
# recorded ids and targets that `idmap-overlay complete-ids` prints.

# True while the TARGET|ID positional is still to come: one word (the
# subcommand) that is neither an option nor an option's value so far, and
# the word before the cursor is not an option waiting for its value.
function __fish_idmap_overlay_wants_record
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l words 0
    set -l value_next 0
    for token in $tokens
        if test $value_next = 1
            set value_next 0
            continue
        end
        if contains -- $token @VALUE_OPTIONS@
            set value_next 1
        else if not string match -q -- '-*' $token
            set words (math $words + 1)
        end
    end
    test $value_next = 0 -a $words = 1
end

function __fish_idmap_overlay_records
    set -l tokens (commandline -opc)
    set -l state_dir
    if set -l at (contains -i -- --state-dir $tokens)
        and test $at -lt (count $tokens)
        set state_dir --state-dir $tokens[(math $at + 1)]
    end
    for token in $tokens
        if string match -q -- '--state-dir=*' $token
            set state_dir --state-dir (string replace -- '--state-dir=' '' $token)
        end
    end
    command idmap-overlay $state_dir complete-ids 2>/dev/null
end


# Added by examples/gen-docs: the column names @COLUMNS_SUBCOMMAND@'s column
# options take. With `list`, after those given already (up to the last
# comma) or a leading + (added to the default columns).
function __fish_idmap_overlay_columns
    set -l head ''
    if test "$argv[1]" = list
        set -l token (commandline -ct | string replace -r -- '^(@LIST_PREFIXES@)' '')
        set -l given (string match -r -- '^(?:\\+|.*,)' $token)
        and set head $given
    end
    for column in @COLUMNS@
        echo $head$column
    end
end
