# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_idmap_overlay_global_optspecs
    string join \n state-dir= v/verbose q/quiet h/help V/version
end

function __fish_idmap_overlay_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_idmap_overlay_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_idmap_overlay_using_subcommand
    set -l cmd (__fish_idmap_overlay_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -l state-dir -d 'Where records, locks and temporary mountpoints live [env: IDMAP_OVERLAY_STATE_DIR] [default: /run/idmap-overlay]' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -s v -l verbose -d 'Say on stderr what was done on success (-v, info lines; -vv adds debug); RUST_LOG overrides'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -s q -l quiet -d 'Only errors on stderr: no warnings'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -s h -l help -d 'Print help'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -s V -l version -d 'Print version'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -f -a "mount" -d 'Mount an overlay whose lower layers appear owned by shifted ids'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -f -a "umount" -d 'Unmount an overlay and remove its record'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -f -a "gc" -d 'Remove leaked temporary mounts, stale records and leftover directories'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -f -a "inspect" -d 'Show what is mounted, by us and by others, and whether anything leaked'
complete -c idmap-overlay -n "__fish_idmap_overlay_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l lowerdir -d 'Lower layers, colon-separated, top layer first (overlayfs order)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l upperdir -d 'The writable layer; with --workdir. Both absent: a read-only overlay' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l workdir -d 'overlayfs\'s work directory, on the same filesystem as --upperdir' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l uidmap -d 'Container id : host id : size. On-disk C..C+S-1 appears as H..H+S-1. Repeatable' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l gidmap -d 'Like --uidmap, for groups; defaults to the uid map' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l userns -d 'Take the maps of an existing user namespace (/proc/PID/ns/user)' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l userns-owner -d 'Accept a --userns created by this uid (by default only root\'s: a user\'s namespace may have taken the pid of an exited container)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -s o -l options -d 'containerd\'s overlay options: lowerdir=A:B,upperdir=U,workdir=W,uidmap=0:100000:65536,... Other overlay options are passed to overlayfs. mount(8)\'s per-mount flags (ro, rw, nosuid, nodev, noexec, noatime, ...) are set on the overlay\'s mount: rw (the default) undoes an earlier ro; an overlay without an upper layer is read-only all the same' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l strategy -d 'How the idmapped layers are built' -r -f -a "auto\t''
detached\t''
common-dir\t''
per-layer\t''"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l id -d 'Record id (default: generated, unique)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l timeout -d 'How long to retry unmounting a busy temporary mount, and to wait for the state lock' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l state-dir -d 'Where records, locks and temporary mountpoints live [env: IDMAP_OVERLAY_STATE_DIR] [default: /run/idmap-overlay]' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l allow-host-root -d 'Accept a map that shows an on-disk id other than 0 as host root (0): a setuid file owned by that id would then run as root'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l idmapped-upper -d 'Idmap the upper layer too: what the container writes is stored with its own ids (a portable layer). The upperdir must be out of reach of users other than root (a 0700 root directory above it)'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -l json -d 'Print the record as JSON instead of the id'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -s v -l verbose -d 'Say on stderr what was done on success (-v, info lines; -vv adds debug); RUST_LOG overrides'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -s q -l quiet -d 'Only errors on stderr: no warnings'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -s h -l help -d 'Print help'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand mount" -s V -l version -d 'Print version'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l state -d 'Only records whose STATE is one of these (comma-separated)' -r -f -a "mounted\t''
unmounted\t''
preparing\t''
unmounting\t''
detached\t''"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l health -d 'Only records whose HEALTH is one of these (comma-separated)' -r -f -a "ok\t''
elsewhere\t''
unknown\t''
running\t''
leaked\t''
gone\t''"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l under -d 'Only records whose target is DIR or lies below it (whole path components; DIR as written, made absolute: symlinks are not followed)' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l namespace -d 'Only overlays mounted in this mount namespace: of the process PID, or a namespace file (/proc/PID/ns/mnt, or a bind mount of one)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l timeout -d 'How long to retry while the overlay is busy (EBUSY, or alive in another mount namespace)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l state-dir -d 'Where records, locks and temporary mountpoints live [env: IDMAP_OVERLAY_STATE_DIR] [default: /run/idmap-overlay]' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -s a -l all -d 'Unmount every recorded overlay the filters keep (the rows `inspect` lists with the same filters; all of them without one), deepest targets first, printing each'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l dry-run -d 'With --all: print what would be unmounted, unmount nothing'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -l detach -d 'Unmount it from this mount namespace only, while copies live on in others (containers): the record stays, in state `detached`, until gc finds no copy left anywhere'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -s v -l verbose -d 'Say on stderr what was done on success (-v, info lines; -vv adds debug); RUST_LOG overrides'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -s q -l quiet -d 'Only errors on stderr: no warnings'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -s h -l help -d 'Print help'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount" -s V -l version -d 'Print version'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l foreign -d 'Also unmount other programs\' idmapped mounts below DIR (for example /var/lib/containerd/tmpmounts) once older than --min-age. Repeatable' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l min-age -d 'Age a foreign mount must reach before it is removed, counted from the first gc run (not --dry-run) that saw it: inspect and --dry-run never start the clock' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l timeout -d 'How long to retry unmounting a busy mount' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l metrics-file -d 'After the run, write Prometheus metrics (what is left, what this run cleaned and failed) to PATH, atomically, for node_exporter\'s textfile collector. PATH is absolute and its directory exists' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l state-dir -d 'Where records, locks and temporary mountpoints live [env: IDMAP_OVERLAY_STATE_DIR] [default: /run/idmap-overlay]' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l dry-run -d 'Say what would be removed, remove nothing'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -l json -d 'Print the report as JSON'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -s v -l verbose -d 'Say on stderr what was done on success (-v, info lines; -vv adds debug); RUST_LOG overrides'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -s q -l quiet -d 'Only errors on stderr: no warnings'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -s h -l help -d 'Print help'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand gc" -s V -l version -d 'Print version'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s o -l output -d 'The columns to show, comma-separated (see --list-columns)' -r -f -a "(__fish_idmap_overlay_columns list)"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l sort -d 'Sort the rows by this column' -r -f -a "(__fish_idmap_overlay_columns)"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l width -d 'Fit the table and the detail view to COLS characters, also in a pipe (default: the terminal\'s width, or COLUMNS, on a terminal; nothing is cut in a pipe)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l format -d 'Output format' -r -f -a "text\t'Tables and fields for people'
json\t'JSON for scripts (the same as --json)'
prometheus\t'Prometheus text exposition format, for node_exporter\'s textfile collector: records by state, leaks by kind (the same with or without --leaks)'"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l foreign -d 'With --leaks or --format prometheus: count other programs\' idmapped mounts below DIR as leaks, as `gc --foreign DIR` would. Repeatable' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s T -l target-of -d 'Only the overlay that holds FILE here (the mount FILE lies on), as findmnt -T; FILE may be relative' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l state -d 'Only records whose STATE is one of these (comma-separated)' -r -f -a "mounted\t''
unmounted\t''
preparing\t''
unmounting\t''
detached\t''"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l health -d 'Only records whose HEALTH is one of these (comma-separated)' -r -f -a "ok\t''
elsewhere\t''
unknown\t''
running\t''
leaked\t''
gone\t''"
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l under -d 'Only records whose target is DIR or lies below it (whole path components; DIR as written, made absolute: symlinks are not followed)' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l namespace -d 'Only overlays mounted in this mount namespace: of the process PID, or a namespace file (/proc/PID/ns/mnt, or a bind mount of one)' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l timeout -d 'With --poll: end once DURATION passed without a line' -r
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l state-dir -d 'Where records, locks and temporary mountpoints live [env: IDMAP_OVERLAY_STATE_DIR] [default: /run/idmap-overlay]' -r -F
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s J -l json -d 'Output JSON for scripts: the same as --format json'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s n -l noheadings -d 'Print no header line'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s r -l raw -d 'Raw output for scripts: cells separated by one space, spaces and other unsafe characters escaped (\\x20), nothing cut or aligned'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l no-trunc -d 'Cut nothing, even on a terminal: whole ids, whole paths'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l list-columns -d 'List the columns -o takes, and what they show'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l leaks -d 'List everything leaked on this host, ours and other programs\'; exit 3 if anything is'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l features -d 'What the running kernel supports: this boot\'s cached probe, else a probe made now (in a temporary directory, cached nowhere)'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l poll -d 'Print a line per change to our overlays as it happens (mounted, unmounted, detached, vanished, leaked, cleaned), as findmnt --poll does; JSON lines with -J. Sees this mount namespace\'s mount table, and the records for the rest. Ends on SIGINT or SIGTERM (exit 0)'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -l first-only -d 'With --poll: end after the first line'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s v -l verbose -d 'Say on stderr what was done on success (-v, info lines; -vv adds debug); RUST_LOG overrides'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s q -l quiet -d 'Only errors on stderr: no warnings'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand help; and not __fish_seen_subcommand_from mount umount gc inspect help" -f -a "mount" -d 'Mount an overlay whose lower layers appear owned by shifted ids'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand help; and not __fish_seen_subcommand_from mount umount gc inspect help" -f -a "umount" -d 'Unmount an overlay and remove its record'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand help; and not __fish_seen_subcommand_from mount umount gc inspect help" -f -a "gc" -d 'Remove leaked temporary mounts, stale records and leftover directories'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand help; and not __fish_seen_subcommand_from mount umount gc inspect help" -f -a "inspect" -d 'Show what is mounted, by us and by others, and whether anything leaked'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand help; and not __fish_seen_subcommand_from mount umount gc inspect help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'

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
        if contains -- $token --foreign --format --health --namespace --output --sort --state --state-dir --target-of --timeout --under --width -T -o
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


# Added by examples/gen-docs: the column names inspect's column
# options take. With `list`, after those given already (up to the last
# comma) or a leading + (added to the default columns).
function __fish_idmap_overlay_columns
    set -l head ''
    if test "$argv[1]" = list
        set -l token (commandline -ct | string replace -r -- '^(-o|--output=)' '')
        set -l given (string match -r -- '^(?:\\+|.*,)' $token)
        and set head $given
    end
    for column in ID TARGET STRATEGY LAYERS MAPS STATE AGE HEALTH UPPER WORK SOURCE MOUNTID DEV MOUNTNS ELSEWHERE PID CREATED KIND MOUNT PATH WHY ACTION
        echo $head$column
    end
end
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand umount; and __fish_idmap_overlay_wants_record" -f -a "(__fish_idmap_overlay_records)" -d 'recorded id or target'
complete -c idmap-overlay -n "__fish_idmap_overlay_using_subcommand inspect; and __fish_idmap_overlay_wants_record" -f -a "(__fish_idmap_overlay_records)" -d 'recorded id or target'
