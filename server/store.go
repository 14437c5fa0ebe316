package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // pure-Go SQLite driver
)

// store is the server's durable state: one SQLite database in the data
// directory, written with synchronous=FULL so a committed transaction
// survives kill -9 and power loss.
type store struct {
	db *sql.DB
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS sites (
	name TEXT PRIMARY KEY,
	status TEXT NOT NULL,            -- invited, enrolled, revoked
	token_hash BLOB,                 -- SHA-256 of the one-time enrollment token; NULL once used
	token_expires INTEGER NOT NULL DEFAULT 0,
	identity_key BLOB,               -- PKIX DER Ed25519 key that signs the site's secagg and dp.spend messages
	cert_serial TEXT,
	cert_not_after INTEGER NOT NULL DEFAULT 0,
	rounds INTEGER NOT NULL DEFAULT 0,
	revoked_reason TEXT
);
CREATE TABLE IF NOT EXISTS revoked_certs (serial TEXT PRIMARY KEY, site TEXT NOT NULL, revoked_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
	round INTEGER PRIMARY KEY,
	stage INTEGER NOT NULL,
	config BLOB NOT NULL,
	participants TEXT NOT NULL DEFAULT '',
	abort_reason TEXT NOT NULL DEFAULT '',
	adapter_version INTEGER NOT NULL DEFAULT 0,
	opened_at INTEGER NOT NULL,
	closed_at INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dp_spend (round INTEGER NOT NULL, site TEXT NOT NULL, audit_index INTEGER NOT NULL, PRIMARY KEY (round, site));
CREATE TABLE IF NOT EXISTS refusals (round INTEGER NOT NULL, site TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (round, site));
CREATE TABLE IF NOT EXISTS cosigs (size INTEGER NOT NULL, site TEXT NOT NULL, PRIMARY KEY (size, site));
CREATE TABLE IF NOT EXISTS published (
	version INTEGER PRIMARY KEY,
	round INTEGER NOT NULL UNIQUE,
	digest TEXT NOT NULL,
	dir TEXT NOT NULL,
	audit_index INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);
`

func openStore(dataDir string) (*store, error) {
	path := filepath.Join(dataDir, "state.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1) // one writer; SQLite serialises anyway
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: schema: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) Close() error { return s.db.Close() }

func (s *store) getMeta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

func (s *store) putMeta(ctx context.Context, key string, v []byte) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, v)
	return err
}

// siteRow is one row of the sites table.
type siteRow struct {
	Name         string
	Status       string
	IdentityKey  []byte
	CertSerial   string
	CertNotAfter int64
	Rounds       int
}

func (s *store) site(ctx context.Context, name string) (*siteRow, error) {
	r := &siteRow{Name: name}
	var serial sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT status, identity_key, cert_serial, cert_not_after, rounds FROM sites WHERE name = ?`, name).
		Scan(&r.Status, &r.IdentityKey, &serial, &r.CertNotAfter, &r.Rounds)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	r.CertSerial = serial.String
	return r, err
}

func (s *store) sites(ctx context.Context) ([]siteRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, status, identity_key, cert_serial, cert_not_after, rounds FROM sites ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []siteRow
	for rows.Next() {
		var r siteRow
		var serial sql.NullString
		if err := rows.Scan(&r.Name, &r.Status, &r.IdentityKey, &serial, &r.CertNotAfter, &r.Rounds); err != nil {
			return nil, err
		}
		r.CertSerial = serial.String
		out = append(out, r)
	}
	return out, rows.Err()
}

// inviteSite stores the hash of a fresh enrollment token for name. A
// revoked site cannot be re-invited under the same name.
func (s *store) inviteSite(ctx context.Context, name string, token []byte, expires time.Time) error {
	h := sha256.Sum256(token)
	res, err := s.db.ExecContext(ctx, `INSERT INTO sites(name, status, token_hash, token_expires) VALUES(?, 'invited', ?, ?)
		ON CONFLICT(name) DO UPDATE SET token_hash = excluded.token_hash, token_expires = excluded.token_expires WHERE status != 'revoked'`,
		name, h[:], expires.Unix())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("site %q is revoked; choose a new name", name)
	}
	return nil
}

var (
	errBadToken     = errors.New("enrollment token is wrong, expired or already used")
	errSiteRevoked  = errors.New("site is revoked")
	errUnknownSite  = errors.New("site is not invited to this federation")
	errCertRevoked  = errors.New("certificate is revoked")
	errNotEnrolled  = errors.New("site is not enrolled")
	errCertReplaced = errors.New("certificate was replaced by a newer one")
)

// consumeToken checks token against the stored hash in constant time and,
// if it matches, marks it used and records the site's identity key and
// certificate, all in one transaction: a token works exactly once.
func (s *store) consumeToken(ctx context.Context, name string, token []byte, now time.Time, identityKey []byte, serial string, notAfter time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var status string
	var stored []byte
	var expires int64
	err = tx.QueryRowContext(ctx, `SELECT status, token_hash, token_expires FROM sites WHERE name = ?`, name).Scan(&status, &stored, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return errUnknownSite
	}
	if err != nil {
		return err
	}
	if status == "revoked" {
		return errSiteRevoked
	}
	h := sha256.Sum256(token)
	ok := len(stored) == len(h) && subtle.ConstantTimeCompare(stored, h[:]) == 1
	if !ok || now.Unix() > expires {
		return errBadToken
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sites SET status = 'enrolled', token_hash = NULL, identity_key = ?, cert_serial = ?, cert_not_after = ? WHERE name = ?`,
		identityKey, serial, notAfter.Unix(), name); err != nil {
		return err
	}
	return tx.Commit()
}

// setCert records a renewed certificate; the old serial is revoked.
func (s *store) setCert(ctx context.Context, name, oldSerial, serial string, notAfter, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE sites SET cert_serial = ?, cert_not_after = ? WHERE name = ? AND status = 'enrolled'`, serial, notAfter.Unix(), name); err != nil {
		return err
	}
	if oldSerial != "" {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO revoked_certs(serial, site, revoked_at) VALUES(?, ?, ?)`, oldSerial, name, now.Unix()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *store) revokeSite(ctx context.Context, name, reason string, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var serial sql.NullString
	err = tx.QueryRowContext(ctx, `SELECT cert_serial FROM sites WHERE name = ?`, name).Scan(&serial)
	if errors.Is(err, sql.ErrNoRows) {
		return errUnknownSite
	}
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sites SET status = 'revoked', token_hash = NULL, revoked_reason = ? WHERE name = ?`, reason, name); err != nil {
		return err
	}
	if serial.Valid && serial.String != "" {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO revoked_certs(serial, site, revoked_at) VALUES(?, ?, ?)`, serial.String, name, now.Unix()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkSiteCert says whether a site certificate is still good: the site is
// enrolled, the serial not revoked and it is the site's current one.
func (s *store) checkSiteCert(ctx context.Context, name, serial string) error {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM revoked_certs WHERE serial = ?`, serial).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return errCertRevoked
	}
	r, err := s.site(ctx, name)
	if err != nil {
		return err
	}
	switch {
	case r == nil:
		return errUnknownSite
	case r.Status == "revoked":
		return errSiteRevoked
	case r.Status != "enrolled":
		return errNotEnrolled
	case r.CertSerial != serial:
		return errCertReplaced
	}
	return nil
}

// roundRow is one row of the rounds table.
type roundRow struct {
	Round          uint64
	Stage          int32
	Config         []byte
	Participants   string
	AbortReason    string
	AdapterVersion uint64
}

func (s *store) insertRound(ctx context.Context, r roundRow, now time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO rounds(round, stage, config, participants, opened_at) VALUES(?, ?, ?, ?, ?)`,
		r.Round, r.Stage, r.Config, r.Participants, now.Unix())
	return err
}

func (s *store) setRoundStage(ctx context.Context, round uint64, stage int32, participants, reason string, now time.Time) error {
	closed := int64(0)
	if stage >= int32(stageDone) {
		closed = now.Unix()
	}
	_, err := s.db.ExecContext(ctx, `UPDATE rounds SET stage = ?, participants = ?, abort_reason = ?, closed_at = ? WHERE round = ?`,
		stage, participants, reason, closed, round)
	return err
}

func (s *store) lastRound(ctx context.Context) (*roundRow, error) {
	r := &roundRow{}
	err := s.db.QueryRowContext(ctx, `SELECT round, stage, config, participants, abort_reason, adapter_version FROM rounds ORDER BY round DESC LIMIT 1`).
		Scan(&r.Round, &r.Stage, &r.Config, &r.Participants, &r.AbortReason, &r.AdapterVersion)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return r, err
}

func (s *store) roundsByStage(ctx context.Context) (map[int32]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT stage, count(*) FROM rounds GROUP BY stage`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int32]int{}
	for rows.Next() {
		var st int32
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// recordDPSpend stores that site's dp.spend for round is in the audit log;
// false when it was already recorded (a retry), so nothing counts twice.
func (s *store) recordDPSpend(ctx context.Context, round uint64, site string, index uint64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO dp_spend(round, site, audit_index) VALUES(?, ?, ?)`, round, site, index)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *store) hasDPSpend(ctx context.Context, round uint64, site string) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM dp_spend WHERE round = ? AND site = ?`, round, site).Scan(&n)
	return n > 0, err
}

func (s *store) recordRefusal(ctx context.Context, round uint64, site, reason string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO refusals(round, site, reason) VALUES(?, ?, ?)`, round, site, reason)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// publishedRow is one published adapter version.
type publishedRow struct {
	Version    uint64
	Round      uint64
	Digest     string
	Dir        string
	AuditIndex uint64
}

// completeRound records a published version and closes its round in one
// transaction.
func (s *store) completeRound(ctx context.Context, p publishedRow, participants []string, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO published(version, round, digest, dir, audit_index, created_at) VALUES(?, ?, ?, ?, ?, ?)`,
		p.Version, p.Round, p.Digest, p.Dir, p.AuditIndex, now.Unix()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE rounds SET stage = ?, adapter_version = ?, closed_at = ? WHERE round = ?`, int32(stageDone), p.Version, now.Unix(), p.Round); err != nil {
		return err
	}
	for _, site := range participants {
		if _, err := tx.ExecContext(ctx, `UPDATE sites SET rounds = rounds + 1 WHERE name = ?`, site); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *store) published(ctx context.Context) ([]publishedRow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT version, round, digest, dir, audit_index FROM published ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []publishedRow
	for rows.Next() {
		var p publishedRow
		if err := rows.Scan(&p.Version, &p.Round, &p.Digest, &p.Dir, &p.AuditIndex); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Stage numbers stored in the rounds table (the proto Stage values).
const (
	stageDone    = 6
	stageAborted = 7
)

func (s *store) recordCosig(ctx context.Context, size uint64, site string) error {
	_, err := s.db.ExecContext(ctx, `INSERT OR IGNORE INTO cosigs(size, site) VALUES(?, ?)`, size, site)
	return err
}

// cosignedSize is the largest checkpoint size cosigned by at least quorum sites.
func (s *store) cosignedSize(ctx context.Context, quorum int) (uint64, error) {
	var size sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT max(size) FROM (SELECT size FROM cosigs GROUP BY size HAVING count(*) >= ?)`, quorum).Scan(&size)
	return uint64(size.Int64), err
}
