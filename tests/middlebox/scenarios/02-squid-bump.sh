# shellcheck shell=bash
# (2) squid ssl-bump with its own CA (a TLS-inspecting proxy): not trusted →
# `tls`, nothing in doubt, doctor names the intercepting issuer and says to
# set ca_file to it; trusted through ca_file → active through the bump.

SQUID_CERTGEN=/usr/lib/squid/security_file_certgen

mb_squid_bump() {
    if ! command -v squid >/dev/null || [ ! -x "$SQUID_CERTGEN" ] || ! squid -v | grep -q with-openssl; then
        skip squid-bump "squid with ssl-bump (Debian squid-openssl) not installed"
        return
    fi
    if ! command -v openssl >/dev/null; then skip squid-bump "openssl not installed"; return; fi
    local b=$work/bump
    mkdir -p "$b"
    start_sim "$b/sim" || { errs+=("[simulator did not start]"); result squid-bump "x"; return; }
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=MB Inspecting Proxy CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -keyout "$b/ca.key" -out "$b/ca.pem" 2>/dev/null || errs+=("[openssl req]")
    mkdir -p "$b/squid"
    cat "$b/ca.pem" "$b/ca.key" >"$b/squid/bump.pem"
    cp "$SIM_CA" "$b/squid/upstream-ca.pem"
    chmod o+x "$work" "$b"
    chown -R proxy "$b/squid"
    runuser -u proxy -- "$SQUID_CERTGEN" -c -s "$b/squid/ssl_db" -M 4MB >/dev/null 2>&1 ||
        errs+=("[certgen -c]")
    SQUID_PORT=$(free_port)
    cat >"$b/squid/squid.conf" <<CONF
http_port 127.0.0.1:$SQUID_PORT ssl-bump tls-cert=$b/squid/bump.pem generate-host-certificates=on dynamic_cert_mem_cache_size=4MB
sslcrtd_program $SQUID_CERTGEN -s $b/squid/ssl_db -M 4MB
sslcrtd_children 2 startup=1 idle=1
tls_outgoing_options cafile=$b/squid/upstream-ca.pem
acl step1 at_step SslBump1
acl step2 at_step SslBump2
ssl_bump peek step1
ssl_bump stare step2
ssl_bump bump all
pid_filename $b/squid/squid.pid
cache_log $b/squid/cache.log
access_log stdio:$b/squid/access.log
cache_store_log none
netdb_filename none
coredump_dir $b/squid
pinger_enable off
shutdown_lifetime 0 seconds
cache deny all
http_access allow localhost
http_access deny all
CONF
    chown -R proxy "$b/squid"
    squid -N -f "$b/squid/squid.conf" >"$b/squid/squid.out" 2>&1 &
    pids+=($!)
    local squid_pid=$!
    wait_for 20 "curl -s -o /dev/null --noproxy '' -x http://127.0.0.1:$SQUID_PORT http://127.0.0.1:1/ 2>/dev/null" ||
        errs+=("[squid did not start]")

    # The portal by name: squid's mimicked certificate carries an IP address
    # SAN as a DNS name, which no client accepts for https://127.0.0.1.
    local url=https://localhost:$SIM_PORT
    # Not trusted: the daemon trusts only the portal's CA.
    local d=$b/untrusted
    write_config "$d" "$url" "ca_file = \"$SIM_CA\"
proxy = \"http://127.0.0.1:$SQUID_PORT\""
    start_daemon "$d" || errs+=("[untrusted: daemon socket]")
    wait_for 20 "[ \"\$(status_field '$d' 'd[\"portal\"][\"consecutive_failures\"]')\" -ge 2 ] 2>/dev/null" ||
        errs+=("[untrusted: no failures seen]")
    expect "untrusted: state" "$(status_field "$d" 'd["license"]["state"]')" unknown
    expect "untrusted: last_error.kind" "$(status_field "$d" 'd["portal"]["last_error"]["kind"]')" tls
    expect "untrusted: activation_in_doubt" "$(status_field "$d" 'd["portal"]["activation_in_doubt"]')" false
    expect_journal "untrusted: journal" "$d" "$MID_UNREACHABLE" WISPANEL_ENDPOINT=activate WISPANEL_ERROR_KIND=tls
    doctor "$d"
    expect "untrusted: doctor exit" "$DOCTOR_RC" 2
    expect_grep "untrusted: doctor names the issuer" "fail +portal TLS: .*MB Inspecting Proxy CA" "$d/doctor.txt"
    expect_grep "untrusted: doctor says ca_file" "intercepting.*set ca_file to that proxy's CA" "$d/doctor.txt"
    stop_pid "$DAEMON_PID"
    local untrusted_n
    untrusted_n=$(sim_count)

    # Trusted through ca_file: active through the bump.
    d=$b/trusted
    write_config "$d" "$url" "ca_file = \"$b/ca.pem\"
proxy = \"http://127.0.0.1:$SQUID_PORT\""
    start_daemon "$d" || errs+=("[trusted: daemon socket]")
    wait_for 20 "[ \"\$(status_field '$d' 'd[\"license\"][\"state\"]')\" = active ]" || errs+=("[trusted: not active]")
    stop_pid "$DAEMON_PID"
    stop_pid "$squid_pid"
    expect "requests for the untrusted daemon" "$untrusted_n" 0
    expect_grep "squid bumped" "CONNECT localhost:$SIM_PORT" "$b/squid/access.log"
    expect_grep "squid forwarded the decrypted request" "POST https://localhost:$SIM_PORT/" "$b/squid/access.log"
    result squid-bump "squid ssl-bump: untrusted → tls, nothing in doubt, doctor names the issuer and ca_file; trusted via ca_file → active"
}
register mb_squid_bump
