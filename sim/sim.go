// Package sim is the swarm simulator: a deterministic discrete-event
// simulation, from a seed, of boxes, viewers and media servers on a fluid
// network, in which the head-end's real scheduler package decides who
// sends what to whom, and against which the same world measures
// baselines.
//
// The scheduler is driven through scheduler.Stepper with the api messages
// a box's transfer daemon sends (Register, Inventory, TransferStarted,
// TransferProgress with the piece bitmap, TransferSucceeded with the
// payload hash, TransferFailed, DeleteRequest) and reads its outbox as the
// gateway does, so a change to the scheduler shows here unchanged. The
// store under it is memstore, since nothing needs to survive the run.
//
// What is modelled: per-box uplink and downlink shared fairly among a
// box's flows; NAT types (pairs that cannot hole-punch go through the
// head-end's TURN relay, whose bytes count as central egress); ISPs and
// regions; churn as alternating online and offline spells, a box coming
// back as a restart; 40-title disks; a Zipf catalog with new releases
// entering the top 20; viewers adding titles to their list, watching
// them and taking them off, and the box deleting watched titles when the
// disk is full; media server clusters with an egress cap each, and an
// outage of one cluster.
//
// What is not: packet-level behaviour (a step moves rate × step bytes),
// latency below one step (a message sent in one step is handled in the
// next), and playback: a title counts as playable when the scheduler
// confirms its whole-title hash, which the box waits for before showing
// it as delivered.
//
// The lower bound on central egress is one copy of each requested title
// that no online box holds at the moment of the request, once until a
// copy completes somewhere: whatever the scheduler, those bytes must
// leave the servers. The downlink bound of a request is the time the
// receiver's downlink alone needs for this title and what the same box
// asked for before and still misses.
package sim

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// Policies names what Run can simulate: the real scheduler first, then
// the baselines.
var Policies = []string{"boxswarm", "server-only", "uncoordinated swarm", "source loop (literal)"}

// Run simulates the scenario under the named policy.
func Run(ctx context.Context, sc Scenario, policyName string, log *slog.Logger) (Results, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var p policy
	switch policyName {
	case "boxswarm":
		p = newOurs(log, nil)
	case "server-only":
		p = &serverOnly{}
	case "uncoordinated swarm":
		p = &swarm{}
	case "source loop (literal)":
		p = &literal{}
	default:
		return Results{}, fmt.Errorf("sim: unknown policy %q (have %s)", policyName, strings.Join(Policies, ", "))
	}
	return run(ctx, sc, p)
}

// Table formats results as a Markdown table, one row per run.
func Table(rs []Results) string {
	var b strings.Builder
	b.WriteString("| scenario | policy | central egress / bound | peer share | p50 / p95 / p99 to playable (s) | p95 vs downlink bound | unfinished (box on + off) | upload Jain | µs per decision | msgs per box-hour |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %.2f× (%s of %s) | %.1f%% | %.0f / %.0f / %.0f | %.2f× | %d + %d of %d | %.2f | %.1f | %.1f |\n",
			r.Scenario, r.Policy, r.EgressRatio, gib(r.CentralBytes), gib(r.LowerBound), 100*r.PeerShare,
			r.LatencyP50, r.LatencyP95, r.LatencyP99, r.RatioP95, r.Unfinished, r.UnfinishedOff, r.Requests, r.UploadJain, r.MicrosPerDecide, r.MsgsPerBoxHour)
	}
	return b.String()
}

func gib(n int64) string { return fmt.Sprintf("%.0f GiB", float64(n)/(1<<30)) }
