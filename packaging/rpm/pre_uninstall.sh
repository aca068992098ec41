# %systemd_preun: on the last removal ($1 = 0), disable and stop the units
# (the socket too, or a client would start the daemon again).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable --now wispanel-licensed.socket wispanel-licensed.service >/dev/null 2>&1 || :
fi
