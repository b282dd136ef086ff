package custtest

import (
	"context"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// Bulk describes a synthetic customer base for benchmarks and tests: a
// catalog of titles with names, genres, years and people varied enough
// that searches find some and not all, and accounts with one box each and
// a priority list on it. The same Bulk (Seed included) makes the same
// titles and lists.
type Bulk struct {
	Titles   int
	Accounts int
	// Catalogs is how many vendors' catalogs the titles are spread over;
	// 3 if zero. Each account subscribes to some of them.
	Catalogs int
	// MinList and MaxList bound the titles on each box's list; 3 and 8
	// if zero.
	MinList, MaxList int
	// Password is every account's password. It is hashed once, when the
	// first account signs up through the Service, and that hash is stored
	// for every other account: argon2id per account would take hours.
	Password string
	// Now is when the catalog is seen: most titles were published before
	// it, a few are premieres after it. It must be the Service's clock.
	Now  time.Time
	Seed uint64
	// Batch is how many titles, or accounts with their box and list, one
	// store Update writes; 5,000 if zero.
	Batch int
}

// Loaded is what LoadBulk made: enough to log in as any account, open its
// box's list, and build searches that match.
type Loaded struct {
	Catalogs []customers.CatalogID
	Titles   []customers.Title // in the order made
	Genres   []string          // every genre a title has
	Words    []string          // the words title names are made of
	Actors   []string          // the actors titles were cast from, most cast first
	Password string

	accounts []customers.AccountID
	boxes    []customers.BoxRef
	regions  []string
}

// Accounts returns how many accounts were made.
func (l *Loaded) Accounts() int { return len(l.accounts) }

// Email returns the log-in address of account i (0 ≤ i < Accounts).
func (l *Loaded) Email(i int) string { return bulkEmail(i) }

// Account returns the ID of account i.
func (l *Loaded) Account(i int) customers.AccountID { return l.accounts[i] }

// Box returns the box of account i.
func (l *Loaded) Box(i int) customers.BoxRef { return l.boxes[i] }

// Region returns account i's region.
func (l *Loaded) Region(i int) string { return l.regions[i] }

func bulkEmail(i int) string { return fmt.Sprintf("viewer%07d@bulk.example.com", i) }

// LoadBulk fills store, which svc runs on, with b. svc must take
// TokenOK payment tokens (Payments does) and register activation codes.
// The catalogs and the first account go through svc; the titles, and every
// other account with its box and list, are written through store's Tx in
// batches, as the Service would have left them.
func LoadBulk(ctx context.Context, svc *customers.Service, store customers.Store, b Bulk) (*Loaded, error) {
	if b.Catalogs <= 0 {
		b.Catalogs = 3
	}
	if b.MinList <= 0 && b.MaxList <= 0 {
		b.MinList, b.MaxList = 3, 8
	}
	if b.Batch <= 0 {
		b.Batch = 5000
	}
	switch {
	case b.Titles < 1 || b.Accounts < 1:
		return nil, fmt.Errorf("custtest: bulk load: %d titles and %d accounts: want at least one of each", b.Titles, b.Accounts)
	case b.MinList < 0 || b.MaxList < b.MinList || b.MaxList > customers.MaxListTitles:
		return nil, fmt.Errorf("custtest: bulk load: list length %d to %d", b.MinList, b.MaxList)
	case b.Now.IsZero():
		return nil, errors.New("custtest: bulk load: Now is zero")
	}
	g := newBulkGen(b)
	l := &Loaded{Genres: slices.Clone(bulkGenres), Words: g.words(), Actors: g.actors, Password: b.Password}

	for c := range b.Catalogs {
		cat := customers.Catalog{ID: customers.CatalogID(fmt.Sprintf("vendor%d", c+1)),
			Vendor: bulkVendors[c%len(bulkVendors)], Name: fmt.Sprintf("%s collection %d", bulkVendors[c%len(bulkVendors)], c+1)}
		if err := svc.PutCatalog(ctx, cat); err != nil {
			return nil, fmt.Errorf("custtest: bulk load: %w", err)
		}
		l.Catalogs = append(l.Catalogs, cat.ID)
	}
	l.Titles = make([]customers.Title, b.Titles)
	for i := range l.Titles {
		l.Titles[i] = g.title(i, l.Catalogs)
	}
	for from := 0; from < len(l.Titles); from += b.Batch {
		batch := l.Titles[from:min(from+b.Batch, len(l.Titles))]
		err := store.Update(ctx, func(tx customers.Tx) error {
			for _, t := range batch {
				if err := tx.PutTitle(t); err != nil {
					return fmt.Errorf("title %s %q: %w", t.Media, t.Name, err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("custtest: bulk load: titles from %d: %w", from, err)
		}
	}

	// The first account signs up as a viewer would; its password hash is
	// the one every other account gets.
	first := g.account(0, l.Catalogs)
	a0, box0, err := svc.SignUp(ctx, customers.SignUp{
		Name: first.Name, Email: first.Email, Password: b.Password, Address: first.Address,
		PaymentToken: first.PaymentToken, Catalogs: first.Catalogs, Supplier: "Bulk Retail",
	})
	if err != nil {
		return nil, fmt.Errorf("custtest: bulk load: sign-up of the first account: %w", err)
	}
	l.accounts = make([]customers.AccountID, b.Accounts)
	l.boxes = make([]customers.BoxRef, b.Accounts)
	l.regions = make([]string, b.Accounts)
	l.accounts[0], l.boxes[0], l.regions[0] = a0.ID, box0.Ref, box0.Region
	list0 := g.list(a0, l.Titles)

	for from := 0; from < b.Accounts; from += b.Batch {
		to := min(from+b.Batch, b.Accounts)
		type rec struct {
			a    customers.Account
			box  customers.Box
			list customers.List
		}
		recs := make([]rec, 0, to-from)
		for i := from; i < to; i++ {
			if i == 0 {
				recs = append(recs, rec{list: customers.List{Box: box0.Ref, Titles: list0, Version: 1, Updated: a0.Created}})
				continue
			}
			a := g.account(i, l.Catalogs)
			a.PasswordHash = a0.PasswordHash
			box := customers.Box{Ref: customers.BoxRef(g.hexID()), Account: a.ID, Code: g.code(),
				Supplier: bulkSuppliers[i%len(bulkSuppliers)], Region: a.Address.Region, Added: a.Created}
			list := customers.List{Box: box.Ref, Titles: g.list(a, l.Titles), Version: 1,
				Updated: a.Created.Add(time.Duration(g.r.Int64N(int64(b.Now.Sub(a.Created)))))}
			recs = append(recs, rec{a, box, list})
			l.accounts[i], l.boxes[i], l.regions[i] = a.ID, box.Ref, box.Region
		}
		err := store.Update(ctx, func(tx customers.Tx) error {
			for _, r := range recs {
				if r.a.ID != "" {
					if err := tx.CreateAccount(r.a); err != nil {
						return fmt.Errorf("account %s: %w", r.a.Email, err)
					}
					if err := tx.PutBox(r.box); err != nil {
						return fmt.Errorf("box of %s: %w", r.a.Email, err)
					}
				}
				if len(r.list.Titles) > 0 {
					if err := tx.PutList(r.list); err != nil {
						return fmt.Errorf("list of box %s: %w", r.list.Box, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("custtest: bulk load: accounts %d to %d: %w", from, to-1, err)
		}
	}
	return l, nil
}

// Word lists the synthetic catalog is made from.
var (
	bulkGenres = []string{"Drama", "Comedy", "Action", "Thriller", "Sci-Fi", "Horror", "Romance", "Documentary",
		"Animation", "Crime", "Fantasy", "Western", "Musical", "War", "Family", "Mystery"}
	bulkAdjectives = []string{"Silent", "Broken", "Golden", "Last", "Hidden", "Crimson", "Frozen", "Wild", "Lost",
		"Dark", "Bright", "Endless", "Savage", "Secret", "Burning", "Hollow", "Electric", "Quiet", "Iron", "Velvet",
		"Distant", "Restless", "Northern", "Forgotten", "Little", "Midnight", "Scarlet", "Wicked", "Gentle", "Final",
		"Shattered", "Sacred", "Lonely", "Neon", "Bitter", "Rising", "Fallen", "Paper", "Glass", "Wandering"}
	bulkNouns = []string{"Night", "River", "Empire", "Garden", "Storm", "Horizon", "Kingdom", "Shadow", "Harbor",
		"Summer", "Winter", "Mountain", "Voyage", "Promise", "Mirror", "Island", "Frontier", "Machine", "Heart",
		"Station", "Forest", "Desert", "Ocean", "Letter", "Witness", "Stranger", "Dream", "Signal", "Orchard", "Crown",
		"Bridge", "Engine", "Lantern", "Canyon", "Festival", "Planet", "Circus", "Tide", "Whisper", "Hunter",
		"Detective", "Daughter", "Soldier", "Pilot", "Thief", "Queen", "Prophet", "Orbit", "Valley", "Harvest"}
	bulkPlaces = []string{"Paris", "Berlin", "Tokyo", "Cairo", "Lisbon", "Havana", "Vienna", "Oslo", "Marrakesh",
		"Bombay", "Chicago", "Naples", "Prague", "Dublin", "Seoul", "Lagos", "Lima", "Kyoto", "Montreal", "Athens"}
	bulkFirst = []string{"Anna", "Ben", "Clara", "David", "Elena", "Frank", "Greta", "Hugo", "Ines", "Jonas",
		"Kira", "Leon", "Maria", "Nils", "Olga", "Paul", "Rosa", "Stefan", "Tara", "Ulrich", "Vera", "Walter",
		"Yara", "Zoe", "Amir", "Bianca", "Carlos", "Dana", "Emil", "Fatima", "Gustav", "Hana", "Ivan", "Julia",
		"Kenji", "Lena", "Marco", "Nora", "Oscar", "Priya", "Quentin", "Rafael", "Sofia", "Tomas", "Uma",
		"Viktor", "Wanda", "Xavier", "Yusuf", "Zeynep", "Aiko", "Bruno", "Chiara", "Dmitri", "Esther", "Felix",
		"Gloria", "Henrik", "Ingrid", "Jamal"}
	bulkLast = []string{"Adler", "Berg", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hoffmann",
		"Ishikawa", "Jansen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
		"Schmidt", "Tanaka", "Ulrich", "Varga", "Weber", "Xu", "Yilmaz", "Zimmermann", "Andersson", "Bianchi",
		"Costa", "Dalton", "Esposito", "Fontaine", "Gruber", "Hartmann", "Iglesias", "Jovanovic", "Keller",
		"Lopez", "Marchetti", "Novak", "Olsen", "Park", "Ramirez", "Santos", "Torres", "Usman", "Vogel",
		"Wagner", "Young", "Ziegler", "Abbott", "Blackwood", "Carver", "Drummond", "Ellison", "Fairfax",
		"Grayson", "Holloway", "Irving", "Jennings", "Kingsley", "Lockhart", "Mercer", "Norwood", "Ormsby",
		"Prescott", "Radcliffe", "Sterling", "Thornton", "Underwood", "Vance", "Whitaker", "Yardley", "Zane"}
	bulkVendors   = []string{"Big Studio", "Indie House", "World Cinema", "Docs & Co", "Family Films"}
	bulkSuppliers = []string{"Bulk Retail", "Electro Shop", "Operator Direct", "Corner Store"}
	bulkLanguages = []string{"en", "en", "en", "en", "de", "fr", "es", "it", "ja", "ko"}
	bulkRatings   = []string{"G", "PG", "PG-13", "R", "NC-17", "FSK 12", "FSK 16"}
	// Accounts' regions, weighted by repetition, and titles' rights.
	bulkRegions      = []string{"DE", "DE", "DE", "DE", "US", "US", "US", "FR", "FR", "AT"}
	bulkTitleRegions = [][]string{{"*"}, {"*"}, {"*"}, {"*"}, {"*"}, {"*"}, {"*"}, {"DE", "AT"}, {"US"}, {"FR", "DE", "AT"}}
	bulkCities       = map[string]string{"DE": "Berlin", "US": "Chicago", "FR": "Lyon", "AT": "Graz"}
)

// bulkGen makes the records of one Bulk from its seed.
type bulkGen struct {
	b      Bulk
	r      *rand.Rand
	actors []string // the cast pool, drawn from with a Zipf law: a few stars, many bit parts
	zipf   *rand.Zipf
	people []string // directors and producers
}

func newBulkGen(b Bulk) *bulkGen {
	g := &bulkGen{b: b, r: rand.New(rand.NewPCG(b.Seed, 0x62756c6b))}
	// Every first and last name pairing, shuffled: 60 × 74 = 4,440.
	for _, f := range bulkFirst {
		for _, l := range bulkLast {
			g.actors = append(g.actors, f+" "+l)
		}
	}
	g.r.Shuffle(len(g.actors), func(i, j int) { g.actors[i], g.actors[j] = g.actors[j], g.actors[i] })
	g.people = g.actors[len(g.actors)/2:] // directors and producers from the rarely cast half
	g.zipf = rand.NewZipf(g.r, 1.1, 10, uint64(len(g.actors)-1))
	return g
}

func (g *bulkGen) words() []string {
	var w []string
	w = append(w, bulkAdjectives...)
	w = append(w, bulkNouns...)
	return append(w, bulkPlaces...)
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func (g *bulkGen) random16() [16]byte {
	var b [16]byte
	for i := range 2 {
		v := g.r.Uint64()
		for j := range 8 {
			b[i*8+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// hexID is an ID like the Service's: 128 bits in hex.
func (g *bulkGen) hexID() string {
	b := g.random16()
	return hex.EncodeToString(b[:])
}

// code is an activation code in the Service's format (four groups of four
// base32 characters).
func (g *bulkGen) code() string {
	var b [10]byte
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	s := base32.StdEncoding.EncodeToString(b[:])
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

func (g *bulkGen) name() string {
	r := g.r
	adj, noun, noun2 := pick(r, bulkAdjectives), pick(r, bulkNouns), pick(r, bulkNouns)
	var n string
	switch r.IntN(7) {
	case 0:
		n = "The " + adj + " " + noun
	case 1:
		n = noun + " of the " + adj + " " + noun2
	case 2:
		n = adj + " " + noun + " in " + pick(r, bulkPlaces)
	case 3:
		n = pick(r, bulkFirst) + "'s " + noun
	case 4:
		n = "A " + noun + " for " + pick(r, bulkFirst)
	case 5:
		n = adj + " " + noun
	default:
		n = noun + " and " + noun2
	}
	if r.IntN(8) == 0 { // sequels
		n += " " + strconv.Itoa(2+r.IntN(4))
	}
	return n
}

func (g *bulkGen) cast(n int) []string {
	out := make([]string, 0, n)
	for len(out) < n {
		a := g.actors[g.zipf.Uint64()]
		dup := false
		for _, o := range out {
			dup = dup || o == a
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}

func (g *bulkGen) crew(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = pick(g.r, g.people)
	}
	return out
}

func (g *bulkGen) title(i int, catalogs []customers.CatalogID) customers.Title {
	r := g.r
	id := media.ID(g.random16())
	id[0] |= 1 // never the zero ID
	year := 1950 + r.IntN(g.b.Now.Year()-1950+1)
	// Published at some time in the ten years before Now; one in thirty
	// is a premiere in the next ninety days.
	publish := g.b.Now.Add(-time.Duration(r.Int64N(int64(10 * 365 * 24 * time.Hour))))
	if r.IntN(30) == 0 {
		publish = g.b.Now.Add(time.Duration(1 + r.Int64N(int64(90*24*time.Hour))))
	}
	t := customers.Title{
		Media: id, Catalog: catalogs[i%len(catalogs)], Name: g.name(), Year: year, Genre: pick(r, bulkGenres),
		Actors: g.cast(3 + r.IntN(4)), Directors: g.crew(1 + r.IntN(2)), Producers: g.crew(1 + r.IntN(2)),
		Language: pick(r, bulkLanguages), Rating: pick(r, bulkRatings),
		Rent:    customers.Money{Amount: int64(199 + 100*r.IntN(5)), Currency: "EUR"},
		Buy:     customers.Money{Amount: int64(799 + 200*r.IntN(7)), Currency: "EUR"},
		Regions: pick(r, bulkTitleRegions), PublishAt: customers.StoreTime(publish),
	}
	switch r.IntN(10) {
	case 0:
		t.Rent = customers.Money{} // buy only
	case 1:
		t.Buy = customers.Money{} // rent only
	case 2:
		t.Window = 48 * time.Hour
	}
	return t
}

func (g *bulkGen) account(i int, catalogs []customers.CatalogID) customers.Account {
	r := g.r
	region := pick(r, bulkRegions)
	var subs []customers.CatalogID
	for _, c := range catalogs {
		if r.IntN(10) < 7 {
			subs = append(subs, c)
		}
	}
	if len(subs) == 0 {
		subs = []customers.CatalogID{pick(r, catalogs)}
	}
	created := customers.StoreTime(g.b.Now.Add(-time.Duration(1 + r.Int64N(int64(3*365*24*time.Hour)))))
	return customers.Account{
		ID: customers.AccountID(g.hexID()), Email: bulkEmail(i),
		Name: pick(r, bulkFirst) + " " + pick(r, bulkLast),
		Address: customers.Address{Street: fmt.Sprintf("%d %s Street", 1+r.IntN(200), pick(r, bulkLast)),
			City: bulkCities[region], Postcode: fmt.Sprintf("%05d", r.IntN(100000)), Region: region},
		PaymentToken: fmt.Sprintf("%s_bulk_%d", TokenOK, i), Status: customers.StatusActive,
		Catalogs: subs, Created: created, Updated: created,
	}
}

// list picks titles the account may have on its box: in a subscribed
// catalog, published, allowed in its region.
func (g *bulkGen) list(a customers.Account, titles []customers.Title) []media.ID {
	q := customers.TitleQuery{Catalogs: a.Catalogs, Region: a.Address.Region, Now: g.b.Now}
	n := g.b.MinList + g.r.IntN(g.b.MaxList-g.b.MinList+1)
	var out []media.ID
	for try := 0; len(out) < n && try < 50*n; try++ {
		t := titles[g.r.IntN(len(titles))]
		if !q.Visible(t) {
			continue
		}
		dup := false
		for _, id := range out {
			dup = dup || id == t.Media
		}
		if !dup {
			out = append(out, t.Media)
		}
	}
	return out
}
