// temporal-kcl-cluster: one binary for a real Temporal cluster on PostgreSQL, built from Go modules with no replace
// directives (as the Temporal CLI builds its dev server).
//
//	temporal-kcl-cluster server --root DIR --config config --env development start --service frontend
//	temporal-kcl-cluster sql-tool --ep 127.0.0.1 -p PORT -u temporal --pl postgres12 --db temporal setup-schema -v 0.0
//	temporal-kcl-cluster ui-server --ip 127.0.0.1 --port 8233 --frontend 127.0.0.1:7233
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // embed tzdata as a fallback, as the server's own main does

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql" // registers postgres12 and postgres12_pgx
	"go.temporal.io/server/tools/sql"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s server|sql-tool|ui-server [args...]\n", os.Args[0])
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	sub, rest := os.Args[1], os.Args[2:]
	switch sub {
	case "server":
		// Same flags and commands as go.temporal.io/server/cmd/server (temporal-server).
		_ = buildServerCLI().Run(append([]string{"temporal-server"}, rest...))
	case "sql-tool":
		// temporal-sql-tool's main, verbatim.
		if err := sql.RunTool(append([]string{"temporal-sql-tool"}, rest...)); err != nil {
			os.Exit(1)
		}
	case "ui-server":
		os.Exit(runUI(rest))
	default:
		usage()
	}
}

// runUI serves the Web UI (the same ui-server module and settings the Temporal CLI's dev server embeds) in front of a
// frontend.
func runUI(args []string) int {
	fs := flag.NewFlagSet("ui-server", flag.ExitOnError)
	ip := fs.String("ip", "127.0.0.1", "address to bind")
	port := fs.Int("port", 8233, "HTTP port")
	frontend := fs.String("frontend", "127.0.0.1:7233", "frontend gRPC address")
	codec := fs.String("codec-endpoint", "", "codec server endpoint")
	_ = fs.Parse(args)
	ui := uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
		Host:                *ip,
		Port:                *port,
		TemporalGRPCAddress: *frontend,
		EnableUI:            true,
		Codec:               uiconfig.Codec{Endpoint: *codec},
		CORS:                uiconfig.CORS{CookieInsecure: true},
		HideLogs:            true,
	}))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- ui.Start() }()
	select {
	case err := <-errc:
		if err != nil {
			fmt.Fprintf(os.Stderr, "ui-server: %v\n", err)
			return 1
		}
		return 0
	case <-stop:
		ui.Stop()
		return 0
	}
}
