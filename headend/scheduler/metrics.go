package scheduler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the scheduler's Prometheus metrics.
type Metrics struct {
	decisions, legsStarted, legsDone, legsFailed, jobsDone prometheus.Counter
	timeouts, hashMismatch, badDonors, offline, connected  prometheus.Counter
	commitErrors, rejected, shadowPlaced                   prometheus.Counter
	sent, received                                         *prometheus.CounterVec
	confirmedBytes                                         *prometheus.CounterVec
	iterSeconds                                            prometheus.Histogram
	boxes, legs                                            prometheus.Gauge
}

// NewMetrics makes the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "boxswarm", Subsystem: "scheduler", Name: name, Help: help})
	}
	m := &Metrics{
		decisions:    c("decisions_total", "Jobs created: a receiver, a title and its donors chosen."),
		legsStarted:  c("transfers_started_total", "Transfers (one donor each) started."),
		legsDone:     c("transfers_succeeded_total", "Transfers both ends reported successful."),
		legsFailed:   c("transfers_failed_total", "Transfers failed, cancelled or timed out."),
		jobsDone:     c("titles_delivered_total", "Titles confirmed against their whole-payload hash."),
		timeouts:     c("transfer_timeouts_total", "Transfers ended by a timeout of one or both ends."),
		hashMismatch: c("hash_mismatches_total", "Delivered titles whose whole-payload hash did not match."),
		badDonors:    c("bad_donors_total", "Donors reported for sending pieces that failed their hash."),
		offline:      c("boxes_offline_total", "Boxes taken offline."),
		connected:    c("connections_total", "Box connections."),
		commitErrors: c("commit_errors_total", "Loop iterations whose writes failed."),
		rejected:     c("messages_rejected_total", "Box messages rejected."),
		shadowPlaced: c("shadow_placements_total", "Copies placed through shadow lists."),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "boxswarm", Subsystem: "scheduler",
			Name: "messages_sent_total", Help: "Messages to boxes, by type."}, []string{"type"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "boxswarm", Subsystem: "scheduler",
			Name: "messages_received_total", Help: "Messages from boxes, by type."}, []string{"type"}),
		confirmedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "boxswarm", Subsystem: "scheduler",
			Name: "delivered_bytes_total", Help: "Bytes of confirmed titles, by the kind of the last donor."}, []string{"source"}),
		iterSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "boxswarm", Subsystem: "scheduler",
			Name: "iteration_seconds", Help: "Duration of one pass of the loop, commit included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		boxes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "boxswarm", Subsystem: "scheduler", Name: "boxes", Help: "Boxes and servers known."}),
		legs:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "boxswarm", Subsystem: "scheduler", Name: "transfers_active", Help: "Transfers in flight."}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.legsStarted, m.legsDone, m.legsFailed, m.jobsDone, m.timeouts, m.hashMismatch,
			m.badDonors, m.offline, m.connected, m.commitErrors, m.rejected, m.shadowPlaced, m.sent, m.received,
			m.confirmedBytes, m.iterSeconds, m.boxes, m.legs)
	}
	return m
}

func (m *Metrics) bytesConfirmed(server bool, n int64) {
	src := "peer"
	if server {
		src = "server"
	}
	m.confirmedBytes.WithLabelValues(src).Add(float64(n))
}

func (m *Metrics) iteration(d time.Duration, boxes, legs int) {
	m.iterSeconds.Observe(d.Seconds())
	m.boxes.Set(float64(boxes))
	m.legs.Set(float64(legs))
}
