package secagg

// SignEnvelope signs env with id as its sender would in round p, for tests
// that play a malicious site whose envelopes are authentic but wrong.
func SignEnvelope(p Params, roster Roster, id *Identity, env *Envelope) error {
	sig, err := id.Sign(signedBytes(contextHash(p, roster), func(e *encoder) { env.appendSigned(e, p.Round) }))
	env.Sig = sig
	return err
}
