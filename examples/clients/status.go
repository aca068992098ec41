// Reads wispanel-licensed's status over its Unix socket (net/http with a
// Unix dialer, standard library only), then follows GET /v1/events until the
// next change and prints it.
//
//	GOPROXY=off go run status.go [SOCKET]   (default /run/wispanel-license/status.sock)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type envelope struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Status  int    `json:"status"`
}

type status struct {
	License struct {
		State    string `json:"state"`
		Licensed bool   `json:"licensed"`
	} `json:"license"`
	Update struct {
		State string `json:"state"`
	} `json:"update"`
	Warnings []struct {
		Code string `json:"code"`
	} `json:"warnings"`
}

func client(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func show(prefix string, s status) {
	codes := []string{}
	for _, w := range s.Warnings {
		codes = append(codes, w.Code)
	}
	ws := strings.Join(codes, ",")
	if ws == "" {
		ws = "none"
	}
	fmt.Printf("%sstate=%s licensed=%t update=%s warnings=%s\n", prefix,
		s.License.State, s.License.Licensed, s.Update.State, ws)
}

func fail(code int, format string, a ...any) {
	fmt.Printf(format+"\n", a...)
	os.Exit(code)
}

// get answers the status document; an error envelope ends the program, a
// 429 is retried once after its Retry-After.
func get(c *http.Client, path string) status {
	for attempt := 1; attempt <= 2; attempt++ {
		r, err := c.Get("http://localhost" + path)
		if err != nil {
			fail(3, "cannot reach the daemon: %v", err)
		}
		dec := json.NewDecoder(r.Body)
		if r.StatusCode >= 400 {
			var e envelope
			_ = dec.Decode(&e)
			r.Body.Close()
			if r.StatusCode == 429 && attempt == 1 {
				wait, err := strconv.Atoi(r.Header.Get("Retry-After"))
				if err != nil || wait < 1 {
					wait = 1
				}
				fmt.Printf("busy (429 %s): retrying in %d s\n", e.Code, wait)
				time.Sleep(time.Duration(wait) * time.Second)
				continue
			}
			code := 1
			if r.StatusCode == 403 {
				code = 2
			}
			fail(code, "error %d %s: %s", e.Status, e.Code, e.Message)
		}
		var s status
		err = dec.Decode(&s)
		r.Body.Close()
		if err != nil {
			fail(1, "not a status document: %v", err)
		}
		return s
	}
	fail(1, "still busy after one retry")
	return status{}
}

func main() {
	sock := "/run/wispanel-license/status.sock"
	if len(os.Args) > 1 {
		sock = os.Args[1]
	}
	c := client(sock)
	show("", get(c, "/v1/status"))

	// Events: the first one is the status now; the next one is the change.
	r, err := c.Get("http://localhost/v1/events")
	if err != nil {
		fail(3, "cannot reach the daemon: %v", err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		var e envelope
		_ = json.NewDecoder(r.Body).Decode(&e)
		fail(1, "error %d %s: %s", e.Status, e.Code, e.Message)
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	seen := 0
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "data:") {
			data := line[len("data:"):]
			seen++
			if seen == 1 {
				fmt.Println("waiting for the next change")
			}
			if seen == 2 {
				var s status
				if err := json.Unmarshal([]byte(strings.TrimSpace(data)), &s); err != nil {
					fail(1, "not a status document: %v", err)
				}
				show("change: ", s)
				return
			}
		}
	}
	fail(1, "the event stream ended")
}
