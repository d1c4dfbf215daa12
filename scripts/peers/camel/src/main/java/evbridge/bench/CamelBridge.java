package evbridge.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.FileOutputStream;
import java.io.IOException;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import org.apache.camel.Exchange;
import org.apache.camel.LoggingLevel;
import org.apache.camel.Message;
import org.apache.camel.builder.RouteBuilder;
import org.apache.camel.component.kafka.KafkaConstants;
import org.apache.camel.main.Main;
import org.apache.camel.support.DefaultMessage;

/**
 * A Kota-to-Kafka bridge as a platform team would write it with Apache
 * Camel: one route per account, camel-http polling, camel-kafka producing,
 * at-least-once. The Camel peer of docs/benchmarks.md ("Peers").
 *
 * <pre>
 *   CamelBridge --bootstrap HOST:PORT --topic T --state DIR
 *               --account NAME=BASE_URL=TOKEN [--account ...]
 *               [--page-size 100] [--interval-ms 1000] [--start ISO]
 * </pre>
 *
 * Per account, on a timer: GET BASE_URL/events?order_direction=asc
 * &amp;created_after=C&amp;page=P&amp;page_size=N with the Bearer token,
 * page after page while has_next_page; each page's items go to Kafka as
 * one batch (the upstream's JSON, key = the event's id; idempotent
 * producer, acks=all), and only once every record of the page is
 * acknowledged is the account's checkpoint (created_after of the sweep,
 * last page done, newest created_at seen) written to DIR/NAME.json
 * (temporary file, fsync, rename). A sweep that reaches the last page
 * moves created_after to the newest created_at it saw. A crash between
 * the acknowledgement and the checkpoint produces the page again:
 * at-least-once, duplicates possible, no loss. The same algorithm as
 * scripts/peer_python_bridge.py.
 */
public final class CamelBridge {
    static final ObjectMapper JSON = new ObjectMapper();

    static final class Account {
        final String name, base, token;
        final Path state;
        String createdAfter;
        int page;
        String newest;

        Account(String spec, Path dir, String start) throws IOException {
            String[] p = spec.split("=", 3);
            if (p.length != 3) {
                throw new IllegalArgumentException("--account NAME=BASE_URL=TOKEN: " + spec);
            }
            name = p[0];
            base = p[1].replaceAll("/+$", "");
            token = p[2];
            state = dir.resolve(name + ".json");
            createdAfter = start;
            if (Files.exists(state)) {
                JsonNode s = JSON.readTree(state.toFile());
                createdAfter = s.get("created_after").asText();
                page = s.get("page").asInt();
                newest = s.hasNonNull("newest") ? s.get("newest").asText() : null;
            }
        }

        void save() throws IOException {
            ObjectNode s = JSON.createObjectNode();
            s.put("created_after", createdAfter);
            s.put("page", page);
            s.put("newest", newest);
            Path tmp = state.resolveSibling(name + ".json.tmp");
            try (FileOutputStream f = new FileOutputStream(tmp.toFile())) {
                f.write(JSON.writeValueAsBytes(s));
                f.getFD().sync();
            }
            Files.move(tmp, state, StandardCopyOption.ATOMIC_MOVE,
                    StandardCopyOption.REPLACE_EXISTING);
        }
    }

    static String enc(String s) {
        return URLEncoder.encode(s, StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = null, topic = null, stateDir = null, start = null;
        int pageSize = 100;
        long intervalMs = 1000;
        List<String> specs = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            String v = i + 1 < args.length ? args[i + 1] : null;
            switch (a) {
                case "--bootstrap" -> bootstrap = v;
                case "--topic" -> topic = v;
                case "--state" -> stateDir = v;
                case "--account" -> specs.add(v);
                case "--page-size" -> pageSize = Integer.parseInt(v);
                case "--interval-ms" -> intervalMs = Long.parseLong(v);
                case "--start" -> start = v;
                default -> {
                    System.err.println("CamelBridge: unknown argument " + a);
                    System.exit(2);
                }
            }
            i++;
        }
        if (bootstrap == null || topic == null || stateDir == null || specs.isEmpty()) {
            System.err.println("usage: CamelBridge --bootstrap HOST:PORT --topic T --state DIR"
                    + " --account NAME=BASE_URL=TOKEN [--account ...] [--page-size N]"
                    + " [--interval-ms MS] [--start ISO]");
            System.exit(2);
        }
        if (start == null) {
            start = Instant.now().minus(29, ChronoUnit.DAYS).truncatedTo(ChronoUnit.SECONDS)
                    .toString();
        }
        Path dir = Path.of(stateDir);
        Files.createDirectories(dir);
        List<Account> accounts = new ArrayList<>();
        for (String s : specs) {
            accounts.add(new Account(s, dir, start));
        }
        final String kafka = "kafka:" + topic + "?brokers=" + bootstrap
                + "&requestRequiredAcks=all&enableIdempotence=true&lingerMs=5"
                + "&compressionCodec=none";
        final int ps = pageSize;
        final long every = intervalMs;

        Main main = new Main();
        main.configure().addRoutesBuilder(new RouteBuilder() {
            @Override
            public void configure() {
                // an upstream or Kafka error ends this sweep; the next
                // timer tick starts again from the checkpoint
                onException(Exception.class).handled(true)
                        .log(LoggingLevel.ERROR, "${routeId}: ${exception.message}");
                for (Account acct : accounts) {
                    // synchronous: the next tick waits for this sweep
                    // (a sweep never overlaps the account's previous one)
                    from("timer:" + acct.name + "?period=" + every
                            + "&delay=0&synchronous=true")
                            .routeId(acct.name)
                            .setProperty("more", constant(true))
                            .loopDoWhile(exchangeProperty("more"))
                                .process(e -> request(e, acct, ps))
                                .toD(acct.base + "/events")
                                .process(e -> page(e, acct))
                                .filter(exchangeProperty("n").isGreaterThan(0))
                                    .to(kafka)
                                .end()
                                .process(e -> checkpoint(e, acct))
                            .end();
                }
            }
        });
        main.run();
    }

    static void request(Exchange e, Account a, int pageSize) {
        Message m = e.getMessage();
        m.setBody(null);
        m.removeHeaders("*");
        m.setHeader(Exchange.HTTP_METHOD, "GET");
        m.setHeader("Authorization", "Bearer " + a.token);
        m.setHeader("Accept", "application/json");
        m.setHeader(Exchange.HTTP_QUERY, "order_direction=asc&created_after="
                + enc(a.createdAfter) + "&page=" + (a.page + 1) + "&page_size=" + pageSize);
    }

    static void page(Exchange e, Account a) throws IOException {
        JsonNode body = JSON.readTree(e.getMessage().getBody(byte[].class));
        List<Message> batch = new ArrayList<>();
        String newest = a.newest;
        for (JsonNode it : body.path("items")) {
            Message m = new DefaultMessage(e.getContext());
            m.setHeader(KafkaConstants.KEY, it.get("id").asText());
            m.setBody(JSON.writeValueAsString(it));
            batch.add(m);
            JsonNode cn = it.hasNonNull("created_at") ? it.get("created_at") : it.get("created");
            String c = cn != null && !cn.isNull() ? cn.asText() : null;
            if (c != null && (newest == null || c.compareTo(newest) > 0)) {
                newest = c;
            }
        }
        e.setProperty("n", batch.size());
        e.setProperty("next", body.path("has_next_page").asBoolean(false));
        e.setProperty("newest", newest);
        e.getMessage().removeHeaders("*");
        e.getMessage().setBody(batch);
    }

    /* Runs only after camel-kafka has had every record of the page
     * acknowledged (an error skips it: onException above). */
    static void checkpoint(Exchange e, Account a) throws IOException {
        boolean next = e.getProperty("next", Boolean.class);
        a.newest = e.getProperty("newest", String.class);
        if (next) {
            a.page++;
        } else {
            if (a.newest != null) {
                a.createdAfter = a.newest;
            }
            a.page = 0;
        }
        a.save();
        e.setProperty("more", next);
    }
}
