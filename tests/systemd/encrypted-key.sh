# shellcheck shell=bash
# The systemd tier: the licence key encrypted at rest (issue 21). Sourced by
# run.sh, which then calls encrypted_key_tier. Its own sandbox (E): the .deb,
# the portal simulator, no key in the configuration; the key encrypted with
# systemd-creds (host key: a sandbox has no TPM2), the packaged drop-in
# encrypted-key.conf; first the trap (a plaintext file where the encrypted one
# belongs: the start fails with 243/CREDENTIALS and doctor says why), then the
# encrypted key: the daemon is licensed, and the key is in plaintext nowhere
# under /etc or the state directory.

encrypted_key_tier() {
	local cred=/etc/credstore.encrypted/wispanel-license.key
	local dropin=/etc/systemd/system/$UNIT.d/encrypted-key.conf
	group "sandbox E: the key as an encrypted credential"
	prepare e none
	sbx dpkg -i /root/wispanel-license.deb >/dev/null 2>&1 || fail "dpkg -i in sandbox E"
	config
	sbx sed -i '/^license_key = /d' /etc/wispanel/license.toml
	check "the configuration names no key" eval '! sbx grep -q "^license_key" /etc/wispanel/license.toml'
	sbx install -d -m 0700 /etc/credstore.encrypted
	sbx install -D -m 0644 /usr/share/wispanel-license/systemd/encrypted-key.conf "$dropin" ||
		fail "the packaged drop-in encrypted-key.conf installs"
	sbx systemctl daemon-reload
	expect_eq "LoadCredentialEncrypted= names license.key" \
		"$(unit_creds LoadCredentialEncrypted | grep '^license\.key:')" "license.key:wispanel-license.key"
	check "the unit's plaintext LoadCredential=license.key is replaced (the last line wins)" eval \
		'unit_creds LoadCredential | grep -q "^product_uuid:" && ! unit_creds LoadCredential | grep -q "^license\.key:"'

	# The trap: a plaintext key where the encrypted one belongs.
	printf '%s\n' "$KEY" | write "$cred" 0600
	sbx systemctl restart $UNIT >/dev/null 2>&1 || true
	failed_243() { [ "$(unit_prop ExecMainStatus)" = 243 ] && [ "$(sbx systemctl is-active $UNIT)" != active ]; }
	check "a plaintext file for LoadCredentialEncrypted= fails the start with 243/CREDENTIALS" wait_for 30 failed_243
	local doc
	doc=$(sbx wispanel-license doctor 2>&1 || true)
	check "doctor explains the 243/CREDENTIALS start" grep -q '243/CREDENTIALS' <<<"$doc"
	grep -F '243/CREDENTIALS' <<<"$doc" | head -n 1 | sed 's/^/     /'
	sbx systemctl stop $UNIT >/dev/null 2>&1 || true
	sbx systemctl reset-failed $UNIT >/dev/null 2>&1 || true

	# The key encrypted with the host key.
	sbx rm -f "$cred"
	printf '%s' "$KEY" | sbx systemd-creds encrypt --with-key=host --name=license.key - "$cred" ||
		fail "systemd-creds encrypt --with-key=host --name=license.key"
	check "the encrypted file does not hold the key in plaintext" eval '! sbx grep -qF "$KEY" "$cred"'
	sbx systemctl restart $UNIT
	expect_eq "restarted with the encrypted key: the unit is active" "$(sbx systemctl is-active $UNIT)" active
	check "licensed (active) with the key from the encrypted credential" wait_for 60 state_is active
	expect_eq "the key in force is the credential's" "$(field .license.key)" "$MASKED"
	doc=$(sbx wispanel-license doctor 2>&1 || true)
	check "doctor names the encrypted credential as the key's source" grep -q 'as an encrypted credential' <<<"$doc"
	grep -F 'encrypted credential' <<<"$doc" | head -n 1 | sed 's/^/     /'
	local found
	found=$(sbx grep -rlF "$KEY" /etc /var/lib/wispanel-license 2>/dev/null || true)
	expect_eq "no plaintext key under /etc or /var/lib/wispanel-license" "$found" ""
	shutdown_sandbox
}
