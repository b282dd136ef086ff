package tv

import "time"

func eur(cents int64) Price { return Price{Amount: cents, Currency: "EUR"} }

// The test catalog: public-domain and open films, so the screenshots show
// plausible titles.
var (
	tGeneral   = Title{ID: "t01", Name: "The General", Genres: []string{"Comedy"}, Price: eur(299), Window: 48 * time.Hour, Length: 78 * time.Minute}
	tNight     = Title{ID: "t02", Name: "Night of the Living Dead", Genres: []string{"Horror"}, Price: eur(399), Window: 48 * time.Hour, Length: 96 * time.Minute}
	tSintel    = Title{ID: "t03", Name: "Sintel", Genres: []string{"Animation", "Fantasy"}, Price: eur(199), Window: 24 * time.Hour, Length: 15 * time.Minute}
	tMetro     = Title{ID: "t04", Name: "Metropolis", Genres: []string{"Drama", "Science fiction"}, Price: eur(349), Window: 48 * time.Hour, Length: 153 * time.Minute}
	tBunny     = Title{ID: "t05", Name: "Big Buck Bunny", Genres: []string{"Animation", "Comedy"}, Price: eur(99), Window: 24 * time.Hour, Length: 10 * time.Minute}
	tCharade   = Title{ID: "t06", Name: "Charade", Genres: []string{"Comedy", "Thriller"}, Price: eur(399), Window: 48 * time.Hour, Length: 113 * time.Minute}
	tDetour    = Title{ID: "t07", Name: "Detour", Genres: []string{"Thriller"}, Price: eur(249), Window: 48 * time.Hour, Length: 68 * time.Minute}
	tKid       = Title{ID: "t08", Name: "The Kid", Genres: []string{"Comedy", "Drama"}, Price: eur(249), Window: 48 * time.Hour, Length: 68 * time.Minute}
	tNosferatu = Title{ID: "t09", Name: "Nosferatu", Genres: []string{"Horror"}, Price: eur(299), Window: 48 * time.Hour, Length: 94 * time.Minute}
	tTears     = Title{ID: "t10", Name: "Tears of Steel", Genres: []string{"Science fiction"}, Price: eur(149), Window: 24 * time.Hour, Length: 12 * time.Minute}
	tCarnival  = Title{ID: "t11", Name: "Carnival of Souls", Genres: []string{"Horror"}, Price: eur(299), Window: 48 * time.Hour, Length: 78 * time.Minute}
	tSherlock  = Title{ID: "t12", Name: "Sherlock Jr.", Genres: []string{"Comedy"}, Price: eur(249), Window: 48 * time.Hour, Length: 45 * time.Minute}
	tLong      = Title{ID: "t13", Name: "The Extraordinarily Long-Winded Adventures of a Title That Does Not Fit", Genres: []string{"Drama"}, Price: eur(1999), Window: 72 * time.Hour, Length: 201 * time.Minute}
	tHis       = Title{ID: "t14", Name: "His Girl Friday", Genres: []string{"Comedy"}, Price: eur(349), Window: 48 * time.Hour, Length: 92 * time.Minute}
)

func catalog() []Title {
	return []Title{tGeneral, tNight, tSintel, tMetro, tBunny, tCharade, tDetour, tKid, tNosferatu, tTears, tCarnival, tSherlock, tLong, tHis}
}

// myList has every state: viewable with time left, downloaded but not
// rented, downloading at several points, not started.
func myList() []ListItem {
	return []ListItem{
		{Title: tGeneral, Download: Downloaded, ViewLeft: 40 * time.Hour},
		{Title: tSintel, Download: Downloaded, ViewLeft: 5 * time.Hour},
		{Title: tMetro, Download: Downloaded},
		{Title: tNight, Download: Downloading, Progress: 0.62},
		{Title: tBunny, Download: Downloading, Progress: 0.18},
		{Title: tCharade, Download: NotStarted},
		{Title: tLong, Download: NotStarted},
		{Title: tKid, Download: NotStarted},
	}
}

// longList scrolls: more items than the screen holds.
func longList() []ListItem {
	l := myList()
	for _, t := range []Title{tDetour, tNosferatu, tTears, tCarnival, tSherlock, tHis} {
		l = append(l, ListItem{Title: t})
	}
	l[9].Download, l[9].Progress = Downloading, 0.9
	return l
}

func testData() Data { return Data{List: myList(), Catalog: catalog()} }
