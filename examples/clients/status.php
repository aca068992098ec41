<?php
// Reads wispanel-licensed's status over its Unix socket with php-curl
// (CURLOPT_UNIX_SOCKET_PATH), then follows GET /v1/events until the next
// change and prints it.
//     php status.php [SOCKET]   (default /run/wispanel-license/status.sock)

$sock = $argv[1] ?? '/run/wispanel-license/status.sock';

function call(string $sock, string $method, string $path): array {
    for ($attempt = 1; $attempt <= 2; $attempt++) {
        $retryAfter = 1;
        $ch = curl_init("http://localhost$path");
        curl_setopt_array($ch, [
            CURLOPT_UNIX_SOCKET_PATH => $sock,
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_HEADERFUNCTION => function ($ch, $h) use (&$retryAfter) {
                if (stripos($h, 'Retry-After:') === 0) {
                    $retryAfter = (int) trim(substr($h, 12));
                }
                return strlen($h);
            },
        ]);
        $body = curl_exec($ch);
        if ($body === false) {
            fwrite(STDERR, 'cannot reach the daemon: ' . curl_error($ch) . "\n");
            exit(3);
        }
        $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        $doc = json_decode($body, true);
        if ($status == 429 && $attempt == 1) {
            echo "busy (429 {$doc['code']}): retrying in $retryAfter s\n";
            sleep(max(1, $retryAfter));
            continue;
        }
        if ($status >= 400) {
            // The envelope: success false, code, message, status.
            echo "error {$doc['status']} {$doc['code']}: {$doc['message']}\n";
            exit($status == 403 ? 2 : 1);
        }
        return $doc;
    }
    echo "still busy after one retry\n";
    exit(1);
}

function show(string $prefix, array $doc): void {
    $codes = array_map(fn ($w) => $w['code'], $doc['warnings']);
    printf("%sstate=%s licensed=%s update=%s warnings=%s\n", $prefix,
        $doc['license']['state'], $doc['license']['licensed'] ? 'true' : 'false',
        $doc['update']['state'], $codes ? implode(',', $codes) : 'none');
}

show('', call($sock, 'GET', '/v1/status'));

// Events: the first one is the status now; the next one is the change.
$buf = '';
$seen = 0;
$ch = curl_init('http://localhost/v1/events');
curl_setopt_array($ch, [
    CURLOPT_UNIX_SOCKET_PATH => $sock,
    CURLOPT_WRITEFUNCTION => function ($ch, $chunk) use (&$buf, &$seen) {
        $buf .= $chunk;
        while (($end = strpos($buf, "\n\n")) !== false) {
            $event = substr($buf, 0, $end);
            $buf = substr($buf, $end + 2);
            $data = [];
            foreach (explode("\n", $event) as $line) {
                if (strncmp($line, 'data:', 5) == 0) {
                    $data[] = ltrim(substr($line, 5));
                }
            }
            if ($data && ++$seen == 1) {
                echo "waiting for the next change\n";
            }
            if ($data && $seen == 2) {
                show('change: ', json_decode(implode("\n", $data), true));
                return 0; // stop: curl ends the transfer
            }
        }
        return strlen($chunk);
    },
]);
curl_exec($ch);
if ($seen < 2) {
    echo "the event stream ended\n";
    exit(1);
}
