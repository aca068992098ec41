# %pre: create the account before the files are unpacked, so that
# /etc/wispanel/license.toml gets its group wispanel (as Fedora's
# %sysusers_create_compat does). Kept in step with systemd/wispanel-license.sysusers.
systemd-sysusers --replace=/usr/lib/sysusers.d/wispanel-license.conf - <<'SYSUSERS' || :
g wispanel          -
u wispanel-license  -:wispanel  "WisPanel licence daemon"  /var/lib/wispanel-license
SYSUSERS
