# %systemd_postun_with_restart: reload unit files; on an upgrade ($1 >= 1)
# restart the daemon if it runs. The socket unit is not restarted: it keeps
# listening, so clients wait in its queue while the daemon restarts. RPM has no purge: the configuration
# (%config(noreplace)) and /var/lib/wispanel-license stay after removal.
systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -ge 1 ]; then
    systemctl try-restart wispanel-licensed.service >/dev/null 2>&1 || :
fi
# The catalog file may be gone: rebuild the catalog without it.
journalctl --update-catalog >/dev/null 2>&1 || :
