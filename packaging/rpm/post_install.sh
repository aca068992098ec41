# %post: the state directory, then %systemd_post (preset on first install;
# on RPM distributions the preset policy decides whether the units are
# enabled; the socket unit follows the same policy as the service).
systemd-tmpfiles --create /usr/lib/tmpfiles.d/wispanel-license.conf >/dev/null 2>&1 || :
if [ "$1" -eq 1 ]; then
    systemctl --no-reload preset wispanel-licensed.service wispanel-licensed.socket >/dev/null 2>&1 || :
fi
# The journal catalog (journalctl -x), as %journal_catalog_update does.
journalctl --update-catalog >/dev/null 2>&1 || :
