package sidebyside

// Ratio summarizes, over rounds, a workload's rate with the sensor in
// configuration cfg ÷ its rate without it in the same round (rate), and the
// same for operations per CPU-second of the workload (perCPU).
func (r *Results) Ratio(workload, cfg string) (rate, perCPU Summary) {
	p := pairedRatios(r, workload, cfg)
	return Summarize(p.rate), Summarize(p.perCPU)
}

// NoiseFloor summarizes what a sensor that costs nothing would score: each
// round without the sensor ÷ the previous one.
func (r *Results) NoiseFloor(workload string) (rate, perCPU Summary) {
	a, b := noiseFloor(r, workload)
	return Summarize(a), Summarize(b)
}

// SensorSamples are the storms of a workload run with the sensor in
// configuration cfg.
func (r *Results) SensorSamples(workload, cfg string) []Sample {
	return sensorSamples(r, workload, cfg)
}

// LastMemory is the sensor's memory at the end of the last round of
// configuration cfg, and the largest peak (VmHWM) over its rounds.
func (r *Results) LastMemory(cfg string) (last Memory, peakKiB uint64) {
	for _, m := range r.Memory {
		if m.Mode == cfg {
			last = m.Memory
			peakKiB = max(peakKiB, m.Memory.PeakKiB)
		}
	}
	return last, peakKiB
}
