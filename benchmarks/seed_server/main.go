// The baseline eventctl's ingest is measured against: a minimal net/http server in the style of the Go seed
// service eventctl began from. It keeps events in a map in memory (nothing durable) and hands each accepted
// event to a background worker that "processes" it after PROCESSING_DELAY_MS and logs it, as the seed did.
// Standard library only, so it builds offline.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

type event struct {
	EventID string          `json:"event_id"`
	Payload json.RawMessage `json:"payload"`
}

type stored struct {
	payload json.RawMessage
	status  string
}

type store struct {
	mu     sync.Mutex
	events map[string]*stored
	queue  chan string
}

func (s *store) add(e event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, taken := s.events[e.EventID]; taken {
		return false
	}
	s.events[e.EventID] = &stored{payload: e.Payload, status: "accepted"}
	return true
}

func (s *store) work(delay time.Duration) {
	for id := range s.queue {
		time.Sleep(delay)
		s.mu.Lock()
		s.events[id].status = "processed"
		s.mu.Unlock()
		log.Printf("processed event %s", id)
	}
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

func main() {
	delayMs, _ := strconv.Atoi(os.Getenv("PROCESSING_DELAY_MS"))
	s := &store{events: make(map[string]*stored), queue: make(chan string, 10000)}
	go s.work(time.Duration(delayMs) * time.Millisecond)
	http.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		var e event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil || e.EventID == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid event"})
			return
		}
		if !s.add(e) {
			writeJSON(w, http.StatusConflict, map[string]string{"error": "duplicate event"})
			return
		}
		s.queue <- e.EventID
		w.Header().Set("Location", "/events/"+e.EventID)
		writeJSON(w, http.StatusAccepted, map[string]string{"event_id": e.EventID, "status": "accepted"})
	})
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := http.ListenAndServe("127.0.0.1:"+port, nil); err != nil {
		panic(err)
	}
}
