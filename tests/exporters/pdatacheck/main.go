// Reads OTLP/JSON lines with the Collector's own pdata unmarshalers (what the
// otlpjsonfile receiver uses) and writes each line back as pdata marshals it.
package main

import (
	"bufio"
	"fmt"
	"os"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: pdatacheck logs|traces|metrics FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	n := 0
	for sc.Scan() {
		n++
		var b []byte
		switch os.Args[1] {
		case "logs":
			d, e := (&plog.JSONUnmarshaler{}).UnmarshalLogs(sc.Bytes())
			if e == nil {
				b, e = (&plog.JSONMarshaler{}).MarshalLogs(d)
			}
			err = e
		case "traces":
			d, e := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(sc.Bytes())
			if e == nil {
				b, e = (&ptrace.JSONMarshaler{}).MarshalTraces(d)
			}
			err = e
		case "metrics":
			d, e := (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(sc.Bytes())
			if e == nil {
				b, e = (&pmetric.JSONMarshaler{}).MarshalMetrics(d)
			}
			err = e
		default:
			err = fmt.Errorf("unknown signal %q", os.Args[1])
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "line %d: %v\n", n, err)
			os.Exit(1)
		}
		out.Write(b)
		out.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
