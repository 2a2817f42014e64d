// spdy_peer is the reference SPDY/3.1 peer for berth's interop test
// (tests/spdy_interop.rs). It uses moby/docker spdystream, the library that
// kubelet, kubectl and crictl use, so that berth's implementation is checked
// against the real thing rather than against itself.
//
// Build in GOPATH mode against Debian's golang-github-docker-spdystream-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o spdy_peer main.go
//
// Modes:
//
//	spdy_peer server             listen on 127.0.0.1:0, print "LISTEN <addr>",
//	                             serve every connection with the ops below
//	spdy_peer client <addr>      run the client checks against a server at addr,
//	                             print "PASS <name>" / "FAIL <name>: <why>",
//	                             exit 1 if any check failed
//	spdy_peer client-hold <addr> open an op=hold stream, print "HOLDING", then
//	                             block until killed (the peer-vanishes test)
//
// Each stream names what it wants in its "op" header; both this program and
// the Rust test implement the same ops:
//
//	echo          copy data back; FIN after the peer's FIN
//	headers       write "name=value\n" per received header value, sorted by
//	              name (values in order), then FIN
//	sink          read to EOF, checking the pattern for header "seed"; answer
//	              "ok <n>" or "bad <offset>", then FIN
//	source        write header "size" bytes of the pattern for "seed", in
//	              writes of header "chunk" bytes, then FIN
//	reset         write "bye", then reset the stream
//	expect-reset  read to the end; remember under header "tag" whether the
//	              stream was reset ("reset") or finished ("fin")
//	query         answer what was remembered for "tag", once it is
//	hold          read and discard until the stream ends; prints "HOLDING"
//	exit          exit the process at once (the peer vanishes)
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/spdystream"
)

func patternByte(seed int, i int64) byte {
	return byte((i*7 + int64(seed)) % 251)
}

func pattern(seed int, off int64, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = patternByte(seed, off+int64(i))
	}
	return b
}

func headerInt(h http.Header, name string, def int) int {
	v, err := strconv.Atoi(h.Get(name))
	if err != nil {
		return def
	}
	return v
}

var stdoutMu sync.Mutex

func say(format string, args ...interface{}) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Printf(format+"\n", args...)
}

// ---- ops ---------------------------------------------------------------------

// hangGuard bounds every wait for an event, only so that a check that goes
// wrong fails instead of hanging: no wait is expected to come near it.
const hangGuard = 60 * time.Second

type tags struct {
	mu sync.Mutex
	m  map[string]string
}

var remembered = tags{m: map[string]string{}}

func (t *tags) set(tag, v string) {
	t.mu.Lock()
	t.m[tag] = v
	t.mu.Unlock()
}

func (t *tags) wait(tag string, d time.Duration) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		t.mu.Lock()
		v, ok := t.m[tag]
		t.mu.Unlock()
		if ok {
			return v
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "unknown"
}

// headerLines renders headers as the "headers" op answers them.
func headerLines(h http.Header) string {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return strings.ToLower(names[i]) < strings.ToLower(names[j]) })
	var b strings.Builder
	for _, name := range names {
		for _, v := range h[name] {
			fmt.Fprintf(&b, "%s=%s\n", strings.ToLower(name), v)
		}
	}
	return b.String()
}

// resetSeen waits until a stream that read EOF is marked reset: spdystream
// reports a reset and a FIN both as EOF on read, and marks the stream
// finished for writing (without our own FIN) just after a reset.
func resetSeen(s *spdystream.Stream) bool {
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		if s.IsFinished() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func verifySink(r io.Reader, seed int) string {
	var off int64
	buf := make([]byte, 64*1024)
	for {
		n, err := r.Read(buf)
		if !bytes.Equal(buf[:n], pattern(seed, off, n)) {
			for i := 0; i < n; i++ {
				if buf[i] != patternByte(seed, off+int64(i)) {
					return fmt.Sprintf("bad %d", off+int64(i))
				}
			}
		}
		off += int64(n)
		if err == io.EOF {
			return fmt.Sprintf("ok %d", off)
		}
		if err != nil {
			return fmt.Sprintf("error %v after %d", err, off)
		}
	}
}

func writeSource(w io.Writer, seed, size, chunk int) error {
	if chunk <= 0 {
		chunk = 32 * 1024
	}
	var off int64
	for off < int64(size) {
		n := chunk
		if rest := int64(size) - off; rest < int64(n) {
			n = int(rest)
		}
		if _, err := w.Write(pattern(seed, off, n)); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

func runOp(sc *spdystream.Connection, s *spdystream.Stream) {
	h := s.Headers()
	switch h.Get("op") {
	case "echo":
		io.Copy(s, s)
		s.Close()
	case "headers":
		s.Write([]byte(headerLines(h)))
		s.Close()
	case "sink":
		s.Write([]byte(verifySink(s, headerInt(h, "seed", 0))))
		s.Close()
	case "source":
		if writeSource(s, headerInt(h, "seed", 0), headerInt(h, "size", 0), headerInt(h, "chunk", 0)) == nil {
			s.Close()
		}
	case "reset":
		s.Write([]byte("bye"))
		s.Reset()
	case "expect-reset":
		io.Copy(io.Discard, s)
		// A reset takes the stream off its connection before its reads end;
		// a FIN leaves it there until our side has finished too.
		if sc.FindStream(s.Identifier()) == nil {
			remembered.set(h.Get("tag"), "reset")
		} else {
			remembered.set(h.Get("tag"), "fin")
		}
	case "query":
		s.Write([]byte(remembered.wait(h.Get("tag"), hangGuard)))
		s.Close()
	case "hold":
		say("HOLDING")
		io.Copy(io.Discard, s)
	case "exit":
		os.Exit(3)
	default:
		s.Reset()
	}
}

// serveStream runs inside spdystream's frame worker: the reply must be sent
// here, before the worker handles the stream's next frame, or spdystream
// drops the data that follows. The op itself runs on its own goroutine.
func serveStream(sc *spdystream.Connection, s *spdystream.Stream) {
	reply := http.Header{}
	reply.Set("x-reply-op", s.Headers().Get("op"))
	if err := s.SendReply(reply, false); err != nil {
		return
	}
	go runOp(sc, s)
}

func server() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	say("LISTEN %s", ln.Addr())
	for {
		conn, err := ln.Accept()
		if err != nil {
			return err
		}
		sc, err := spdystream.NewConnection(conn, true)
		if err != nil {
			return err
		}
		go sc.Serve(func(s *spdystream.Stream) { serveStream(sc, s) })
	}
}

// ---- client checks -------------------------------------------------------------

func dial(addr string) (*spdystream.Connection, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	sc, err := spdystream.NewConnection(conn, false)
	if err != nil {
		return nil, err
	}
	go sc.Serve(spdystream.NoOpStreamHandler)
	return sc, nil
}

func open(sc *spdystream.Connection, kv ...string) (*spdystream.Stream, error) {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	s, err := sc.CreateStream(h, nil, false)
	if err != nil {
		return nil, err
	}
	// As Kubernetes' client does: wait for the reply before using the stream.
	if err := s.WaitTimeout(hangGuard); err != nil {
		return nil, fmt.Errorf("waiting for reply: %w", err)
	}
	return s, nil
}

func readAllTimeout(s *spdystream.Stream, d time.Duration) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(s)
		ch <- result{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(d):
		return nil, errors.New("timed out reading")
	}
}

func checkPing(sc *spdystream.Connection) error {
	done := make(chan error, 1)
	go func() {
		_, err := sc.Ping()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(hangGuard):
		return errors.New("no PING reply")
	}
}

func checkHeaders(sc *spdystream.Connection) error {
	s, err := open(sc, "op", "headers", "streamType", "stdout", "port", "8080",
		"x-multi", "one", "x-multi", "two", "x-empty", "", "x-utf8", "grüße")
	if err != nil {
		return err
	}
	// A mid-stream HEADERS frame: its block must be inflated too, or the
	// server's zlib context falls out of step for every later stream.
	if err := s.SendHeader(http.Header{"X-Late": {"late"}}, false); err != nil {
		return err
	}
	s.Close()
	got, err := readAllTimeout(s, hangGuard)
	if err != nil {
		return err
	}
	want := "op=headers\nport=8080\nstreamtype=stdout\nx-empty=\nx-multi=one\nx-multi=two\nx-utf8=grüße\n"
	if string(got) != want {
		return fmt.Errorf("server saw %q, want %q", got, want)
	}
	return nil
}

func echo(sc *spdystream.Connection, payload []byte) error {
	s, err := open(sc, "op", "echo")
	if err != nil {
		return err
	}
	werr := make(chan error, 1)
	go func() {
		// Writes of assorted sizes, as callers of io.Copy and bare Write do.
		rest := payload
		for i := 0; len(rest) > 0; i++ {
			n := []int{1, 100, 32 * 1024, 200 * 1024}[i%4]
			if n > len(rest) {
				n = len(rest)
			}
			if _, err := s.Write(rest[:n]); err != nil {
				werr <- err
				return
			}
			rest = rest[n:]
		}
		werr <- s.Close()
	}()
	got, err := readAllTimeout(s, hangGuard)
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(payload), len(got))
	}
	return nil
}

func checkConcurrentEcho(sc *spdystream.Connection) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := echo(sc, pattern(i, 0, 300*1024+i)); err != nil {
				errs <- fmt.Errorf("stream %d: %w", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func checkSink(sc *spdystream.Connection, size int) error {
	s, err := open(sc, "op", "sink", "seed", "9")
	if err != nil {
		return err
	}
	if err := writeSource(s, 9, size, 64*1024); err != nil {
		return err
	}
	s.Close()
	got, err := readAllTimeout(s, hangGuard)
	if err != nil {
		return err
	}
	if want := fmt.Sprintf("ok %d", size); string(got) != want {
		return fmt.Errorf("server answered %q, want %q", got, want)
	}
	return nil
}

func checkSource(sc *spdystream.Connection, size int) error {
	s, err := open(sc, "op", "source", "seed", "5", "size", strconv.Itoa(size), "chunk", "100000")
	if err != nil {
		return err
	}
	s.Close()
	result := make(chan string, 1)
	go func() { result <- verifySink(s, 5) }()
	select {
	case got := <-result:
		if want := fmt.Sprintf("ok %d", size); got != want {
			return fmt.Errorf("received %q, want %q", got, want)
		}
		return nil
	case <-time.After(hangGuard):
		return errors.New("timed out")
	}
}

func checkResetByServer(sc *spdystream.Connection) error {
	s, err := open(sc, "op", "reset")
	if err != nil {
		return err
	}
	got, err := readAllTimeout(s, hangGuard)
	if err != nil {
		return err
	}
	if string(got) != "bye" {
		return fmt.Errorf("read %q before the reset, want \"bye\"", got)
	}
	if !resetSeen(s) {
		return errors.New("stream ended without RST_STREAM")
	}
	return nil
}

func checkResetByClient(sc *spdystream.Connection) error {
	s, err := open(sc, "op", "expect-reset", "tag", "go-reset")
	if err != nil {
		return err
	}
	s.Write([]byte("some data"))
	if err := s.Reset(); err != nil {
		return err
	}
	// And a stream that ends with FIN, to show the two are told apart.
	f, err := open(sc, "op", "expect-reset", "tag", "go-fin")
	if err != nil {
		return err
	}
	f.Close()
	for tag, want := range map[string]string{"go-reset": "reset", "go-fin": "fin"} {
		q, err := open(sc, "op", "query", "tag", tag)
		if err != nil {
			return err
		}
		q.Close()
		got, err := readAllTimeout(q, hangGuard)
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("server saw %q for %s, want %q", got, tag, want)
		}
	}
	return nil
}

func client(addr string) error {
	sc, err := dial(addr)
	if err != nil {
		return err
	}
	checks := []struct {
		name string
		run  func() error
	}{
		{"ping", func() error { return checkPing(sc) }},
		{"headers", func() error { return checkHeaders(sc) }},
		{"concurrent-echo", func() error { return checkConcurrentEcho(sc) }},
		{"large-echo", func() error { return echo(sc, pattern(3, 0, 9<<20)) }},
		{"large-sink", func() error { return checkSink(sc, 16<<20) }},
		{"large-source", func() error { return checkSource(sc, 16<<20) }},
		{"reset-by-server", func() error { return checkResetByServer(sc) }},
		{"reset-by-client", func() error { return checkResetByClient(sc) }},
		{"ping-again", func() error { return checkPing(sc) }},
	}
	failed := 0
	for _, c := range checks {
		start := time.Now()
		if err := c.run(); err != nil {
			say("FAIL %s: %v", c.name, err)
			failed++
		} else {
			say("PASS %s (%s)", c.name, time.Since(start).Round(time.Millisecond))
		}
	}
	// GOAWAY, as kubectl does when it is done.
	sc.Close()
	if failed > 0 {
		return fmt.Errorf("%d checks failed", failed)
	}
	return nil
}

func clientHold(addr string) error {
	sc, err := dial(addr)
	if err != nil {
		return err
	}
	s, err := open(sc, "op", "hold")
	if err != nil {
		return err
	}
	if _, err := s.Write([]byte("ready")); err != nil {
		return err
	}
	say("HOLDING")
	select {}
}

func main() {
	// The test keeps our stdin open; when it goes away, however it ends,
	// so do we.
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: spdy_peer server | client <addr> | client-hold <addr>")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server()
	case "client", "client-hold":
		if len(os.Args) < 3 {
			err = errors.New("missing address")
		} else if os.Args[1] == "client" {
			err = client(os.Args[2])
		} else {
			err = clientHold(os.Args[2])
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "spdy_peer:", err)
		os.Exit(1)
	}
}
