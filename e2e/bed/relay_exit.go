package bed

// ExitErr returns how the relay's last run ended: nil for exit status 0, an
// *exec.ExitError otherwise (nil too while it runs).
func (r *Relay) ExitErr() error {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	return r.p.err
}
