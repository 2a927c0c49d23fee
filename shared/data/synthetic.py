"""SYNTHETIC demo store: a seeded, deterministic generator of WANDS-shaped search data.

Everything this module produces is synthetic. The class taxonomy is the real one
(the 188 Wayfair classes that WANDS queries use), but every product, brand, query
and judgment is invented from the tables below. It exists so that the suite can be
demonstrated, indexed and benchmarked at any size (20k products by default, up to
1,000,000) without shipping real catalog data, and so that keyword and dense
retrieval can be told apart: titles use varied product-type nouns (sofa, settee,
chesterfield ...) and shoppers often use a synonym the titles never contain
(couch), exactly the gap dense retrieval is meant to close.

Judgments follow WANDS's annotation rules: a product of the query's class whose
attributes match every attribute the query names is Exact; the right class with an
attribute mismatch, or a closely related class, is Partial; anything else is
Irrelevant. Each query is judged on a pool (the products of its class, a sample
of related classes and a random sample of the rest), as WANDS pooled its judgments.

``python -m shared.data.synthetic --out DIR`` writes the store in WANDS's file
format, with a README.txt that says it is synthetic and how it was made.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from shared.data.catalog import Product
from shared.data.dataset import EXACT, IRRELEVANT, PARTIAL, Dataset, Label, Query, labels_to_dict
from shared.data.wands import (
    LABEL_COLUMNS,
    PRODUCT_COLUMNS,
    QUERY_COLUMNS,
    product_to_wands_row,
)
from shared.paths import shared_data_dir

ATTRIBUTE_KEYS = ("colour", "material", "style", "size")

# Class; family; nouns used in titles; words shoppers use (often absent from titles);
# optional size set overriding the family's ("none": the class has no size).
_CLASS_TABLE = """
Accent Chairs; seating; armchair, accent chair, club chair, wingback chair, slipper chair, barrel chair, side chair; chair, armchair, reading chair, living room chair, comfy chair
Accent Chests / Cabinets; storage; accent cabinet, accent chest, storage cabinet, credenza, cupboard, console cabinet; cabinet, chest, storage cabinet, cupboard
Accent Pillows; textile; throw pillow, pillow cover, lumbar pillow, square pillow, pillow insert; pillow, throw pillows, couch pillow, decorative pillow; pillow
Accent Stools; seating; stool, footstool, vanity stool, step stool, pouf stool; small stool, stool, footstool
Adjustable Beds; beds; adjustable base, power base, adjustable foundation, massage base; adjustable bed, electric bed, adjustable bed frame
Area Rugs; rugs; rug, area rug, runner, flatweave rug, shag rug, washable rug, hand-tufted rug; carpet, rug, living room rug, area carpet
Armoires & Wardrobes; bedroom; armoire, wardrobe, clothes closet, wardrobe cabinet; wardrobe, armoire, closet, clothes cabinet
Awnings; outdoor; awning, retractable awning, door canopy, window awning; awning, patio cover, sun shade, porch cover
Bar Stools; dining; bar stool, counter stool, swivel stool, backless stool, saddle stool; barstool, counter stool, kitchen stool, bar chair, island stools; height
Barn Door Hardware; hardware; barn door hardware kit, sliding door track, rolling door hardware, flat track kit; barn door, barn door hardware, sliding door track, barn door kit; none
Bars & Bar Sets; dining; home bar, bar cabinet, wine bar, bar unit, pub cabinet; bar, home bar, bar set, liquor cabinet, dry bar
Bath Accessories; bath; soap dispenser, toothbrush holder, bathroom accessory set, tumbler, vanity tray, lotion pump; bathroom accessories, soap dispenser, bath set, toothbrush holder
Bath Rugs & Mats; bath_textile; bath mat, bath rug, shower mat, contour rug, memory foam mat; bath mat, bathroom rug, bathroom mat, shower rug
Bathroom Sink Faucets; bath_fixture; widespread faucet, centerset faucet, single hole faucet, lavatory faucet, vessel faucet; bathroom faucet, sink faucet, bath faucet, tap, bathroom sink faucet
Bathroom Storage; bath_storage; over-the-toilet storage, linen tower, bathroom cabinet, medicine cabinet, wall cabinet, linen cabinet; bathroom cabinet, bathroom storage, over toilet shelf, medicine cabinet
Bed Accessories; bedding; bed skirt, bed risers, bed rail, sheet straps, dust ruffle; bed skirt, bed risers, dust ruffle, bed extender
Bed Frames; beds; platform bed, metal bed frame, upholstered bed, panel bed, sleigh bed, low profile bed; bed frame, bed, platform bed, bedframe
Bedding Sets; bedding; comforter set, duvet cover set, quilt set, bedspread set, coverlet set; comforter, bedding set, duvet, quilt, bedspread, bedding
Beds; beds; platform bed, canopy bed, storage bed, sleigh bed, four poster bed, upholstered bed, wingback bed; bed, bed frame, queen bed, bedroom bed
Benches; seating; bench, storage bench, entryway bench, upholstered bench, bedroom bench, settee bench; bench, entry bench, shoe bench, end of bed bench
Bike And Sport Racks; fitness; bike rack, bike stand, sports rack, ball storage rack, wall bike mount; bike rack, bike storage, sports equipment rack, bike hanger
Bird Play Stand & Playcenters; pets; bird play stand, parrot playstand, bird perch, bird playground; bird stand, parrot stand, bird perch, bird gym
Bookcases; storage; bookcase, bookshelf, etagere, ladder shelf, cube bookcase, library shelf; bookshelf, bookcase, book shelf, shelves
Boxes, Bins, Baskets, & Buckets; storage; storage basket, storage bin, storage box, woven basket, bucket, fabric cube; basket, storage bin, box, storage basket, bins
Bread & Loaf Pans; kitchenware; loaf pan, bread pan, pullman pan, meatloaf pan; loaf pan, bread pan, baking pan, bread tin
Cabinet and Drawer Knobs; hardware; cabinet knob, drawer knob, mushroom knob, round knob, knob; knobs, cabinet knobs, drawer knobs, dresser knobs; count
Cabinet and Drawer Pulls; hardware; cabinet pull, drawer pull, bar pull, cup pull, handle, edge pull; handles, cabinet pulls, drawer handles, kitchen hardware; count
Candle Holders; decor; candle holder, candlestick, hurricane, candle lantern, votive holder, candelabra; candle holder, candlesticks, candle stand
Canisters & Jars; kitchenware; canister, jar, storage jar, cookie jar, canister set; canister, jar, kitchen canister, container
Carts & Stands; kitchenware; rolling cart, utility cart, serving cart, kitchen cart, microwave cart, bar cart; cart, rolling cart, kitchen cart, trolley, bar cart
Ceiling Fans; lighting; ceiling fan, fan with light, outdoor ceiling fan, low profile fan, bladeless fan, hugger fan; ceiling fan, fan, fan light, ceiling fan with light; fan
Chair Accessories; textile; chair cover, chair pad, chair glides, seat cover, chair slipcover; chair cover, chair cushion, chair pad, chair leg covers
Chairmats; office; chair mat, desk chair mat, floor protector, carpet protector mat; chair mat, office chair mat, floor mat for chair, desk mat
Chandeliers; lighting; chandelier, candle style chandelier, crystal chandelier, sputnik chandelier, wagon wheel chandelier, drum chandelier; chandelier, ceiling light, dining room light, hanging light; lights
Christmas Trees; seasonal; artificial christmas tree, pre-lit tree, flocked tree, holiday tree, fir tree, pine tree; christmas tree, xmas tree, holiday tree, fake christmas tree
Closet Organizer Accessories; storage; closet rod, valet rod, tie rack, belt rack, closet drawer insert, hanging organizer; closet organizer, closet accessories, tie rack
Coat Racks and Hooks; entry; coat rack, hall tree, wall hook rack, coat stand, hook rail; coat rack, coat hooks, hall tree, coat hanger
Coffee & Cocktail Tables; tables; coffee table, cocktail table, lift top coffee table, trunk, drum table, sled table; coffee table, center table, living room table
Computer Mounts; electronics; monitor arm, monitor mount, desk mount, keyboard tray, cpu holder; monitor stand, monitor arm, computer mount
Cooking Utensils; kitchenware; spatula, turner, ladle, utensil set, tongs, whisk, spoon; cooking utensils, spatula, kitchen utensils, utensil set
Cookware Sets; kitchenware; cookware set, pots and pans set, nonstick set, cookware collection; pots and pans, cookware, pan set, pots; pieces
Covers & Carry Bags; outdoor; grill cover, patio furniture cover, storage bag, carry bag, protective cover; cover, furniture cover, grill cover, outdoor cover
Crib Bedding Sets; kids; crib bedding set, crib set, nursery bedding, crib sheet set; crib bedding, baby bedding, nursery bedding
Crock Pots & Slow Cookers; appliance; slow cooker, crock pot, multi-cooker, programmable slow cooker; crockpot, slow cooker, crock pot; quarts
Curtain Hardware & Accessories; hardware; curtain rod, drapery rod, tieback, curtain rings, finial, double rod; curtain rod, drapery hardware, curtain rings, curtain tie backs; rod
Curtains & Drapes; textile; curtain panel, drape, blackout curtain, sheer panel, window treatment, valance; curtains, drapes, blackout curtains, window curtains; curtain
Daybeds & Guest Beds; beds; daybed, trundle bed, guest bed, folding bed, futon bed; daybed, guest bed, trundle, day bed
Deck Boxes; outdoor; deck box, storage bench, patio storage box, outdoor storage chest; deck box, outdoor storage, patio storage, pool storage
Decorative Objects; decor; figurine, sculpture, decorative bowl, bookends, tabletop accent, decorative box; decor, knick knacks, figurine, sculpture, table decor
Decorative Trays; decor; decorative tray, serving tray, ottoman tray, vanity tray, catchall; tray, decorative tray, coffee table tray
Desks; office; desk, writing desk, computer desk, standing desk, executive desk, secretary desk; desk, office desk, computer desk, work table, study table
Dining Bowls; tabletop; bowl, cereal bowl, soup bowl, pasta bowl, salad bowl; bowls, soup bowls, cereal bowls; set
Dining Chairs; dining; side chair, dining chair, arm chair, parsons chair, windsor chair, upholstered side chair; dining chairs, kitchen chairs, dining room chairs, chairs; set
Dining Linens; textile; tablecloth, table runner, placemat, cloth napkin, table linen; tablecloth, table runner, placemats, napkins; table
Dining Table Sets; dining; dining set, dinette set, table and chair set, counter height set, bistro set; dining set, kitchen table set, table and chairs, dinette, dining room set; seats
Dining Tables; dining; dining table, kitchen table, extendable table, trestle table, pedestal table, farmhouse table; dining table, kitchen table, dinner table, table; seats
Dog and Cat Bowls, Feeders & Accessories; pets; pet bowl, dog bowl, cat feeder, elevated feeder, automatic feeder, water fountain; dog bowl, cat bowl, pet feeder, pet bowl, dog dish
Door Knobs; hardware; door knob, passage knob, privacy knob, dummy knob, entry knob; door knob, doorknob, door handle
Door Levers; hardware; door lever, passage lever, privacy lever, lever handle, entry lever; door handle, lever, door lever
Door Mats; entry; doormat, welcome mat, entry mat, coir mat, boot tray; doormat, welcome mat, front door mat, outdoor mat
Dressers & Chests; bedroom; dresser, chest of drawers, double dresser, tallboy, lowboy, drawer chest; dresser, chest of drawers, drawers, bedroom dresser; drawers
Dryers; appliance; dryer, electric dryer, gas dryer, front load dryer, clothes dryer; dryer, clothes dryer, tumble dryer; cuft
End Tables; tables; end table, side table, accent table, c table, tray table, pedestal table; side table, end table, small table, night table
Espresso Machines; appliance; espresso machine, espresso maker, coffee machine, cappuccino maker, latte machine; espresso machine, coffee maker, espresso maker, coffee machine; none
Faux Florals; decor; artificial flowers, faux floral arrangement, silk flowers, floral arrangement, faux peony, faux orchid; fake flowers, artificial flowers, flower arrangement
Faux Plants and Trees; decor; artificial plant, faux tree, fake plant, faux fiddle leaf fig, artificial palm, faux succulent; fake plant, artificial plant, fake tree
Fencing & Accessories; outdoor; fence panel, garden fence, picket fence, privacy screen, garden gate; fence, fencing, garden fence, privacy fence
Flatware Serving Pieces; tabletop; serving spoon, cake server, serving fork, salad servers, serving set; serving utensils, serving spoons, salad servers
Floor & Wall Tile; building; porcelain tile, ceramic tile, mosaic tile, subway tile, peel and stick tile, floor tile; tile, floor tile, backsplash tile, wall tile, backsplash
Flush Mount Lighting; lighting; flush mount, semi flush mount, ceiling light, drum flush mount, close to ceiling light; ceiling light, flush mount light, ceiling lamp, hallway light; lights
Foam and Latex Mattresses; mattress; memory foam mattress, latex mattress, gel foam mattress, mattress in a box, foam mattress; mattress, memory foam mattress, foam mattress, bed mattress
Folding Tables; dining; folding table, card table, banquet table, portable table, fold-out table; folding table, card table, foldable table, fold up table; none
Food Storage & Dispensers; kitchenware; food storage container, cereal dispenser, container set, meal prep container, beverage dispenser; food containers, tupperware, food storage, storage containers
Fountains; outdoor; fountain, water fountain, tiered fountain, wall fountain, birdbath fountain, tabletop fountain; fountain, water feature, garden fountain
Free Weights; fitness; dumbbell, kettlebell, barbell, weight plate, dumbbell set; weights, dumbbells, kettlebell, hand weights; lbs
Furniture Covers; textile; slipcover, sofa cover, couch cover, chair slipcover, furniture protector; couch cover, sofa cover, slipcover, furniture protector
Furniture Cushions; textile; seat cushion, outdoor cushion, chair cushion, bench cushion, replacement cushion; cushions, patio cushions, seat cushion, chair pads
Garden Accents; outdoor; garden stake, wind spinner, gazing ball, garden sign, stepping stone, wind chime; garden decor, yard decor, lawn ornament, yard art
Garden Statues; outdoor; garden statue, gnome, statuary, animal statue, buddha statue; garden statue, yard statue, gnome, lawn statue
Glassware & Barware; tabletop; wine glass, tumbler, highball glass, stemless glass, coupe, rocks glass, decanter; glasses, drinking glasses, wine glasses, cups; set
Hampers & Baskets; storage; laundry hamper, hamper, laundry basket, clothes hamper, laundry sorter; hamper, laundry basket, clothes basket
Headboards; beds; headboard, upholstered headboard, panel headboard, wall mounted headboard, wingback headboard; headboard, bed headboard, head board
Indoor Chaise Lounges; seating; chaise lounge, chaise, fainting couch, lounge chair, recamier; chaise lounge, chaise, lounge chair, lounger
Innerspring Mattresses; mattress; innerspring mattress, hybrid mattress, pillow top mattress, coil mattress, spring mattress; mattress, spring mattress, hybrid mattress
Interior Doors; building; interior door, prehung door, slab door, french door, bifold door, pocket door; door, interior door, bedroom door, closet door
Jewelry Armoires; bedroom; jewelry armoire, jewelry cabinet, mirrored jewelry cabinet, jewelry chest, jewelry organizer; jewelry armoire, jewelry box, jewelry cabinet, jewelry storage; none
Kids Beds; kids; bunk bed, loft bed, toddler bed, kids bed, house bed, captain bed; bunk bed, kids bed, toddler bed, loft bed; bed
Kids Chairs; kids; kids chair, toddler chair, kids armchair, bean bag chair, kids rocking chair; kids chair, childrens chair, toddler chair
Kids Desks; kids; kids desk, children's desk, art desk, activity table, study desk; kids desk, childrens desk, desk for kids
Kids Wall Décor; kids; wall decal, nursery wall art, kids wall art, growth chart, wall sticker; nursery decor, kids wall art, wall decals
Kitchen Faucets; kitchen_fixture; kitchen faucet, pull down faucet, pull out faucet, bridge faucet, pot filler, touchless faucet; kitchen faucet, sink faucet, kitchen tap
Kitchen Islands; dining; kitchen island, kitchen cart, island, butcher block island, rolling island; kitchen island, island, kitchen cart, island table
Kitchen Mats; rugs; anti-fatigue mat, kitchen mat, kitchen rug, comfort mat, kitchen runner; kitchen rug, kitchen mat, anti fatigue mat
Kitchen Sinks; kitchen_fixture; kitchen sink, farmhouse sink, undermount sink, apron front sink, drop-in sink, workstation sink; kitchen sink, farmhouse sink, sink
Landscape Lighting; outdoor_lighting; path light, spotlight, well light, landscape light, solar path light, flood light; landscape lighting, path lights, outdoor lights, solar lights
Laundry Accessories & Storage; storage; drying rack, ironing board, laundry cart, laundry sorter, over the door hanger; drying rack, ironing board, laundry room storage
Lawn Games; outdoor_play; cornhole set, giant tumble tower, croquet set, bocce set, ring toss, ladder toss; yard games, cornhole, outdoor games
Lecterns & Podiums; office; lectern, podium, speaker stand, presentation stand; podium, lectern, speech stand
Licensed Products; kids; team logo sign, licensed wall decor, fan gear, team banner, character throw; sports decor, team sign, fan decor, character blanket
Light Bulbs; electronics; led bulb, light bulb, edison bulb, filament bulb, smart bulb, halogen bulb; light bulbs, bulbs, led bulbs; count
Lighting Accessories; lighting; light cord kit, ceiling medallion, canopy kit, lamp harp, chain extension; lighting parts, light kit, ceiling medallion; none
Lighting Shades; lighting; lamp shade, drum shade, empire shade, pendant shade, bell shade; lampshade, lamp shade, light shade; generic
Living Room Sets; seating; living room set, sofa set, sofa and loveseat set, configurable set; living room set, couch set, sofa set, living room furniture
Living Room Table Sets; tables; table set, coffee table set, nesting table set, 3 piece table set; coffee table set, living room tables, end table set
Log Storage; outdoor; log rack, firewood rack, log holder, log carrier, firewood storage; firewood rack, log holder, wood rack
Mailboxes; outdoor; mailbox, post mount mailbox, wall mount mailbox, locking mailbox, parcel box; mailbox, mail box, package box, parcel drop box
Makeup Vanities; bedroom; makeup vanity, vanity table, dressing table, vanity set, vanity desk; makeup vanity, vanity table, makeup table, vanity with mirror
Massage Chairs; seating; massage chair, zero gravity massage chair, shiatsu chair, massage recliner; massage chair, massage recliner, salon chair, spa chair
Mattress Covers and Protectors; bedding; mattress protector, mattress encasement, waterproof protector, mattress cover; mattress protector, mattress cover, waterproof mattress pad
Mattress Toppers and Pads; bedding; mattress topper, mattress pad, featherbed, foam topper, gel topper; mattress topper, mattress pad, bed topper
Memo Boards; office; bulletin board, cork board, whiteboard, chalkboard, memo board, pin board; bulletin board, cork board, whiteboard, chalkboard
Molding & Millwork; building; crown molding, baseboard, corbel, wainscoting, trim piece; molding, trim, crown molding
Nightstands; bedroom; nightstand, bedside table, night table, bedside cabinet, floating nightstand; nightstand, night stand, bedside table
Office Chairs; office; office chair, task chair, desk chair, executive chair, ergonomic chair, gaming chair; office chair, desk chair, computer chair, gaming chair
Office Storage Cabinets; office; file cabinet, filing cabinet, storage cabinet, lateral file, mobile pedestal; file cabinet, filing cabinet, office cabinet
Ottomans; seating; ottoman, pouf, storage ottoman, footstool, cocktail ottoman, cube ottoman; ottoman, footrest, pouf, foot stool
Outdoor Conversation Sets; outdoor_furniture; conversation set, seating group, sectional seating group, chat set; patio furniture set, outdoor furniture, patio set, outdoor sectional
Outdoor Fireplaces; outdoor; fire pit, fire table, chiminea, outdoor fireplace, propane fire pit; fire pit, firepit, outdoor fire pit, gas fire pit
Outdoor Lanterns & Lamps; outdoor_lighting; lantern, solar lantern, outdoor lamp, post light, outdoor floor lamp; outdoor lantern, lantern, outdoor lamp
Outdoor Wall Decor; outdoor; metal wall art, outdoor wall art, outdoor clock, wall planter, sun face wall decor; outdoor wall art, patio wall decor, fence decor
Outdoor Wall Lights; outdoor_lighting; outdoor wall lantern, wall light, outdoor sconce, porch light, barn light; porch light, outdoor light, exterior light, outdoor wall light
Pantry Cabinets; storage; pantry cabinet, kitchen pantry, larder cabinet, food pantry, storage pantry; pantry, pantry cabinet, kitchen cabinet
Patio Bar Sets; outdoor_furniture; bar set, bistro set, pub set, outdoor bar set, counter height set; patio bar set, outdoor bar, bistro set
Patio Bar Stools; outdoor_furniture; outdoor bar stool, patio stool, counter stool, bar stool; outdoor bar stools, patio bar stool
Patio Chaise Lounges; outdoor_furniture; chaise lounge, sun lounger, reclining chaise, lounger, pool lounger; pool lounge chair, outdoor chaise, sun lounger
Patio Dining Sets; outdoor_furniture; dining set, patio dining set, outdoor dining set, bistro dining set; patio table and chairs, outdoor dining set, patio dining set; seats
Patio Lounge Chairs; outdoor_furniture; lounge chair, adirondack chair, patio chair, club chair, egg chair, deep seating chair; outdoor chair, patio chair, adirondack chair
Patio Rockers & Gliders; outdoor_furniture; rocking chair, glider, porch rocker, patio rocker, glider bench; rocking chair, porch rocker, glider
Patio Sofas; outdoor_furniture; outdoor sofa, patio sofa, loveseat, outdoor sectional, outdoor daybed; outdoor couch, patio couch, outdoor sofa
Patio Umbrella Stands & Bases; outdoor_furniture; umbrella base, umbrella stand, weighted base, cantilever base; umbrella stand, umbrella base, umbrella holder
Pendant Lights; lighting; pendant, pendant light, mini pendant, globe pendant, drum pendant, cluster pendant; hanging light, pendant light, kitchen island light; lights
Pergolas; outdoor; pergola, gazebo, arbor, pergola kit, louvered pergola; pergola, gazebo, outdoor canopy
Pet Gates; pets; pet gate, dog gate, freestanding gate, pressure mounted gate, pet playpen; dog gate, pet gate, baby gate
Picnic Baskets & Coolers; outdoor; picnic basket, cooler, ice chest, cooler cart, picnic backpack; cooler, picnic basket, ice chest
Picture Frames; decor; picture frame, photo frame, collage frame, gallery frame, frame set; picture frames, photo frames, frames
Plant & Telephone Tables; tables; plant stand, pedestal, telephone table, plant table, flower stand; plant stand, plant holder, plant table
Planters; outdoor; planter, plant pot, window box, raised bed, hanging planter, urn planter; planter, flower pot, plant pot, pots
Plates & Saucers; tabletop; dinner plate, salad plate, plate, saucer, dessert plate, charger plate; plates, dinner plates, dishes; set
Playhouses & Play Tents; outdoor_play; playhouse, play tent, teepee, cottage playhouse, play house; playhouse, kids tent, play tent, teepee
Projector Screens; electronics; projector screen, projection screen, motorized screen, pull down screen; projector screen, movie screen
Range Hoods; kitchen_fixture; range hood, vent hood, wall mount hood, under cabinet hood, island hood; range hood, vent hood, stove hood, exhaust fan
Recliners; seating; recliner, power recliner, rocker recliner, wall hugger recliner, lift chair, reclining chair; recliner, reclining chair, lazy boy, lift chair
Refrigerators; appliance; refrigerator, french door refrigerator, side-by-side refrigerator, mini fridge, wine fridge, beverage refrigerator; fridge, refrigerator, mini fridge; cuft
Ride-On Toys; outdoor_play; ride-on car, ride on toy, balance bike, tricycle, scooter, electric ride-on; ride on car, kids car, power wheels
Saunas; fitness; sauna, infrared sauna, barrel sauna, indoor sauna, steam sauna; sauna, home sauna, infrared sauna; person
Sectionals; seating; sectional, sectional sofa, l-shaped sectional, modular sectional, reversible sectional, u-shaped sectional; sectional, sectional couch, l shaped couch, corner sofa; sofa_width
Serving Dishes & Platters; tabletop; platter, serving bowl, serving dish, serving platter, charcuterie board; platter, serving dish, serving platter
Sheets And Sheet Sets; bedding; sheet set, fitted sheet, flat sheet, percale sheet set, sateen sheet set; sheets, bed sheets, sheet set
Shelving & Racks; storage; shelving unit, storage rack, wire shelving, etagere, utility shelf, garage shelving; shelves, shelving unit, storage rack
Shoe Storage; entry; shoe rack, shoe cabinet, shoe organizer, shoe bench, shoe storage tower; shoe rack, shoe organizer, shoe cabinet
Shower & Tub Accessories; bath; shower caddy, shower shelf, bath tray, grab bar, shower seat, shower squeegee; shower caddy, shower organizer, bathtub tray
Shower & Tub Doors; bath_fixture; shower door, frameless shower door, sliding shower door, tub door, bypass door; shower door, glass shower door, tub door
Shower Curtain Hooks and Accessories; bath; shower curtain hooks, shower rod, curved shower rod, shower rings, shower curtain rings; shower hooks, shower rod, curtain rings
Shower Curtains; bath_textile; shower curtain, shower curtain liner, fabric shower curtain, shower curtain set; shower curtain, bathroom curtain
Shower Faucets & Systems; bath_fixture; shower system, shower faucet, tub and shower faucet, shower trim kit, thermostatic valve; shower faucet, shower set, shower system
Shower Heads; bath_fixture; shower head, rain shower head, handheld shower, dual shower head, showerhead; shower head, rain shower, handheld shower
Sideboards & Buffets; dining; sideboard, buffet, credenza, server, buffet table, china cabinet; sideboard, buffet, buffet cabinet, credenza
Smoke & CO Detectors; electronics; smoke detector, carbon monoxide alarm, smoke alarm, co detector, combination alarm; smoke detector, smoke alarm, co detector; none
Sofa & Console Tables; tables; console table, sofa table, entryway table, hall table, narrow table; console table, sofa table, entry table, hallway table
Sofas; seating; sofa, loveseat, settee, chesterfield, sleeper sofa, futon, love seat; couch, sofa, loveseat, sofa couch; sofa_width
Specialty Serving; tabletop; cake stand, chip and dip, tiered server, gravy boat, deviled egg plate, butter dish; cake stand, serving set, tiered tray
Storage Drawers; storage; storage drawers, drawer unit, rolling drawer cart, plastic drawers, drawer chest; storage drawers, plastic drawers, drawer organizer
Strainers, Colanders, & Salad Spinners; kitchenware; colander, strainer, salad spinner, sieve, mesh strainer; colander, strainer, salad spinner
String Lights; outdoor_lighting; fairy lights, bistro lights, globe string lights, patio lights, led string, rope light; string lights, fairy lights, patio lights
Swing Set Accessories; outdoor_play; swing seat, tire swing, swing chains, slide, trapeze bar, saucer swing; swing, swing seat, tree swing
TV Stands & Entertainment Centers; tables; tv stand, media console, entertainment center, media cabinet, tv console, fireplace tv stand; tv stand, tv console, entertainment center, media stand; tv
Table Lamps; lighting; table lamp, desk lamp, buffet lamp, bedside lamp, accent lamp, lamp set; lamp, table lamp, bedside lamp, desk lamp; lamp
Toilet Paper Holders; bath; toilet paper holder, tissue holder, toilet roll holder, freestanding paper holder; toilet paper holder, tp holder, toilet roll stand
Towel & Robe Hooks; bath; robe hook, towel hook, double hook, hook rail, towel ring; towel hook, robe hook, bathroom hooks
Trash Cans & Recycling; kitchenware; trash can, waste basket, step can, recycling bin, garbage can, touchless can; trash can, garbage can, waste bin, wastebasket; gallons
Tubs And Whirlpools; bath_fixture; bathtub, soaking tub, freestanding tub, clawfoot tub, whirlpool tub, alcove tub; bathtub, tub, soaking tub, freestanding bathtub
Under Cabinet Lighting; lighting; under cabinet light, puck light, light bar, led strip, tape light; under cabinet lights, puck lights, led strip lights; count
Uniters Outdoor Furniture; outdoor_furniture; outdoor furniture set, patio furniture piece, outdoor seating, patio set; patio furniture, outdoor furniture
Vanities; vanity; bathroom vanity, single vanity, double vanity, vanity set, washstand, sink vanity, vanity cabinet with top; bathroom vanity, vanity, bathroom sink cabinet, sink vanity
Vanity Bases; vanity; vanity base, vanity cabinet, base cabinet, vanity base only; vanity cabinet, vanity base, bathroom cabinet
Vanity Lighting; lighting; vanity light, bath bar, bathroom light, vanity fixture, wall bar light; vanity light, bathroom light, bath light, mirror light; lights
Vases, Urns, Jars, & Bottles; decor; vase, urn, decorative jar, bottle, bud vase, floor vase, jug; vase, flower vase, floor vase
Wall & Accent Mirrors; wall_decor; wall mirror, accent mirror, floor mirror, round mirror, full length mirror, sunburst mirror, leaner mirror; mirror, wall mirror, full length mirror, round mirror
Wall Art; wall_decor; canvas print, framed print, painting, art print, poster, canvas art, graphic art; wall art, canvas, painting, picture, artwork
Wall Clocks; wall_decor; wall clock, clock, oversized clock, farmhouse clock, atomic clock; wall clock, clock, big clock; generic
Wall Décor; wall_decor; metal wall decor, wall sculpture, wall accent, tapestry, wall hanging, macrame; wall decor, wall hanging, wall decoration
Wall Mounted Shelves; wall_decor; floating shelf, wall shelf, ledge shelf, corner shelf, picture ledge; floating shelves, wall shelf, shelf; generic
Wall Plates; hardware; switch plate, outlet cover, wall plate, toggle plate, decorator plate; light switch cover, outlet cover, wall plate; gang
Wall Sconces; lighting; wall sconce, sconce, swing arm lamp, wall light, plug-in sconce, armed sconce; wall light, sconce, wall lamp, wall sconce; lights
Wallpaper; building; wallpaper, peel and stick wallpaper, wall mural, grasscloth, removable wallpaper, wall covering; wallpaper, peel and stick wallpaper, wall paper
Washing Machines; appliance; washer, washing machine, front load washer, top load washer, laundry center, portable washer; washer, washing machine, laundry machine; cuft
Weather Instruments; outdoor; weather station, rain gauge, thermometer, barometer, weathervane; weather station, thermometer, rain gauge, weather vane
Wreaths; seasonal; wreath, door wreath, garland, eucalyptus wreath, christmas wreath; wreath, door wreath, front door wreath"""

_UPHOLSTERY_COLOURS = (
    "Gray", "Beige", "Cream", "Navy", "Blue", "Green", "Charcoal", "Brown", "Ivory", "Pink",
    "Mustard", "Teal", "Black", "White", "Rust", "Emerald",
)  # fmt: skip
_WOOD_COLOURS = (
    "Natural", "Walnut", "Espresso", "White", "Black", "Gray", "Oak", "Cherry", "Brown",
    "Honey", "Driftwood",
)  # fmt: skip
_FINISH_COLOURS = (
    "Matte Black", "Brushed Nickel", "Chrome", "Polished Brass", "Oil Rubbed Bronze",
    "Brushed Gold", "Satin Nickel", "White",
)  # fmt: skip
_DECOR_COLOURS = (
    "White", "Black", "Gold", "Silver", "Blue", "Green", "Gray", "Beige", "Red", "Pink",
    "Multi-Color", "Clear", "Brown",
)  # fmt: skip
_TEXTILE_COLOURS = (
    "White", "Gray", "Blue", "Navy", "Beige", "Sage", "Blush", "Charcoal", "Ivory", "Green",
    "Yellow", "Multi-Color", "Black", "Terracotta",
)  # fmt: skip
_APPLIANCE_COLOURS = ("Stainless Steel", "Black", "White", "Black Stainless", "Slate", "Red")
_STYLES = (
    "Modern", "Mid-Century Modern", "Farmhouse", "Traditional", "Industrial", "Coastal",
    "Glam", "Bohemian", "Scandinavian", "Rustic", "Contemporary", "Transitional",
)  # fmt: skip

# Size vocabularies, referenced by families and by the class table's fifth column.
_SIZE_SETS: dict[str, tuple[str, ...]] = {
    "generic": ("Small", "Medium", "Large", "Oversized"),
    "bed": ("Twin", "Full", "Queen", "King", "California King"),
    "rug": ("2' x 3'", "4' x 6'", "5' x 8'", "8' x 10'", "9' x 12'", "6' Round"),
    "seats": ("Seats 2", "Seats 4", "Seats 6", "Seats 8"),
    "sofa_width": ("62''", "72''", "84''", "90''", "96''", "108''"),
    "vanity": ("24''", "30''", "36''", "48''", "60''", "72''"),
    "height": ("Counter Height", "Bar Height", "Extra Tall"),
    "pillow": ("18'' x 18''", "20'' x 20''", "22'' x 22''", "12'' x 20''", "14'' x 36''"),
    "curtain": ("63'' L", "84'' L", "96'' L", "108'' L"),
    "set": ("Set of 2", "Set of 4", "Set of 6", "Set of 8", "Set of 12"),
    "count": ("Single", "Pack of 5", "Pack of 10", "Pack of 25"),
    "lights": ("1-Light", "3-Light", "4-Light", "5-Light", "6-Light", "8-Light"),
    "lamp": ("15''", "20''", "24''", "28''", "32''"),
    "fan": ("42''", "44''", "52''", "60''", "72''"),
    "tv": ("Up to 50''", "Up to 55''", "Up to 65''", "Up to 75''", "Up to 85''"),
    "art": ("12'' x 16''", "18'' x 24''", "24'' x 36''", "30'' x 40''", "40'' x 60''"),
    "cuft": ("3.5 cu. ft.", "4.5 cu. ft.", "5.2 cu. ft.", "7.4 cu. ft.", "20 cu. ft."),
    "quarts": ("2 Qt.", "4 Qt.", "6 Qt.", "8 Qt."),
    "pieces": ("3 Piece", "5 Piece", "8 Piece", "10 Piece", "12 Piece"),
    "drawers": ("3 Drawer", "4 Drawer", "6 Drawer", "8 Drawer", "9 Drawer"),
    "gallons": ("4 Gallon", "8 Gallon", "13 Gallon", "16 Gallon", "20 Gallon"),
    "lbs": ("5 lb", "10 lb", "15 lb", "25 lb", "50 lb"),
    "person": ("1-Person", "2-Person", "4-Person", "6-Person"),
    "gang": ("1-Gang", "2-Gang", "3-Gang", "4-Gang"),
    "rod": ("28''-48''", "48''-84''", "66''-120''", "120''-170''"),
    "table": ("60'' x 84''", "60'' x 102''", "60'' x 120''", "13'' x 72''", "13'' x 90''"),
}


@dataclass(frozen=True, slots=True)
class _Family:
    """What products of a family of classes look like and cost."""

    path: str
    colours: tuple[str, ...]
    materials: tuple[str, ...]
    size_set: str | None
    price_median: float
    adjectives: tuple[str, ...]
    suffixes: tuple[str, ...]
    rooms: tuple[str, ...]


def _split(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _family(
    path: str,
    colours: tuple[str, ...],
    materials: str,
    size_set: str | None,
    price: float,
    adjectives: str,
    suffixes: str,
    rooms: str,
) -> _Family:
    return _Family(
        path, colours, _split(materials), size_set, price, _split(adjectives), _split(suffixes),
        _split(rooms),
    )  # fmt: skip


# fmt: off
_FAMILIES: dict[str, _Family] = {
    "seating": _family(
        "Furniture / Living Room Furniture", _UPHOLSTERY_COLOURS,
        "Velvet, Linen, Genuine Leather, Faux Leather, Polyester, Boucle, Microfiber, Chenille",
        "generic", 520.0, "Upholstered, Tufted, Rolled Arm, Channel Tufted, Swivel, Armless, "
        "Square Arm, Down Filled, Performance Fabric",
        "with Cushions, with Pillows, with Storage, with Ottoman, Set of 2",
        "living room, family room, den, reading nook",
    ),
    "tables": _family(
        "Furniture / Living Room Furniture", _WOOD_COLOURS,
        "Solid Wood, Manufactured Wood, Metal, Glass, Marble, Reclaimed Wood, Acacia, Rattan",
        "generic", 230.0, "Round, Rectangular, Lift Top, Nesting, Pedestal, Trestle, Oval",
        "with Storage, with Drawer, with Shelf, with Casters, Set of 2",
        "living room, entryway, family room",
    ),
    "dining": _family(
        "Furniture / Kitchen & Dining Furniture", _WOOD_COLOURS,
        "Solid Wood, Manufactured Wood, Metal, Rubberwood, Acacia, Faux Leather, Linen, Rattan",
        "seats", 330.0, "Extendable, Upholstered, Counter Height, Round, Farmhouse Style, Swivel",
        "with Leaf, with Storage, Set of 2, Set of 4, with Cushion",
        "dining room, kitchen, breakfast nook",
    ),
    "bedroom": _family(
        "Furniture / Bedroom Furniture", _WOOD_COLOURS,
        "Solid Wood, Manufactured Wood, Pine, Mango Wood, Metal, Engineered Wood",
        "drawers", 360.0, "Double, Tall, Mirrored, Lighted, Soft Close, Tapered Leg",
        "with Mirror, with Drawers, with Charging Station, with LED Lights",
        "bedroom, guest room, closet",
    ),
    "beds": _family(
        "Furniture / Bedroom Furniture / Beds & Headboards", _UPHOLSTERY_COLOURS,
        "Solid Wood, Metal, Velvet, Linen, Faux Leather, Manufactured Wood, Iron",
        "bed", 480.0, "Upholstered, Tufted, Low Profile, Wingback, Canopy, Storage",
        "with Storage, with Drawers, with Headboard, with USB Ports, with Trundle",
        "bedroom, guest room, master bedroom",
    ),
    "mattress": _family(
        "Mattresses & Foundations", ("White", "Gray", "Blue"),
        "Memory Foam, Gel Memory Foam, Latex, Pocketed Coils, Hybrid Foam",
        "bed", 520.0, "Medium Firm, Plush, Firm, Cooling, Pillow Top",
        "in a Box, with CertiPUR-US Foam, with Cooling Cover",
        "bedroom, guest room, kids room",
    ),
    "bedding": _family(
        "Bed & Bath / Bedding", _TEXTILE_COLOURS,
        "Cotton, Linen, Microfiber, Bamboo, Flannel, Percale, Sateen, Polyester",
        "bed", 85.0, "Reversible, Quilted, Cooling, Deep Pocket, Organic, Breathable",
        "with Shams, Set of 2, with Pillowcases",
        "bedroom, guest room, dorm",
    ),
    "storage": _family(
        "Storage & Organization", _WOOD_COLOURS,
        "Manufactured Wood, Solid Wood, Metal, Wicker, Seagrass, Plastic, Fabric, Bamboo",
        "generic", 120.0, "Stackable, Collapsible, Wall Mounted, Rolling, Adjustable, Open",
        "with Lid, with Doors, with Wheels, with Handles, Set of 3",
        "closet, garage, laundry room, bedroom, kitchen",
    ),
    "bath_storage": _family(
        "Bed & Bath / Bathroom Storage", _WOOD_COLOURS,
        "Manufactured Wood, Solid Wood, Bamboo, Metal, MDF",
        "generic", 140.0, "Freestanding, Wall Mounted, Recessed, Mirrored, Slim",
        "with Doors, with Shelves, with Mirror",
        "bathroom, powder room",
    ),
    "entry": _family(
        "Furniture / Entryway Furniture", _WOOD_COLOURS,
        "Solid Wood, Metal, Bamboo, Coir, Rubber, Manufactured Wood",
        "generic", 75.0, "Freestanding, Wall Mounted, Non-Slip, Weatherproof, Tiered",
        "with Hooks, with Bench, with Shelf, Set of 2",
        "entryway, mudroom, front porch, hallway",
    ),
    "office": _family(
        "Furniture / Office Furniture", ("Black", "White", "Gray", "Walnut", "Oak", "Espresso"),
        "Mesh, Faux Leather, Manufactured Wood, Solid Wood, Metal, Vinyl, Cork",
        "generic", 210.0, "Ergonomic, Height Adjustable, Lockable, L-Shaped, Mobile",
        "with Lumbar Support, with Drawers, with Keyboard Tray, with Wheels",
        "home office, study, workspace",
    ),
    "kids": _family(
        "Baby & Kids", ("White", "Pink", "Blue", "Gray", "Natural", "Multi-Color", "Green"),
        "Solid Wood, Manufactured Wood, Cotton, Polyester, Vinyl, Pine",
        "generic", 160.0, "Kids, Toddler, Convertible, Playful, Whimsical",
        "with Storage, with Trundle, with Slide, with Chair",
        "kids room, nursery, playroom",
    ),
    "outdoor_furniture": _family(
        "Outdoor / Patio Furniture", ("Brown", "Gray", "Black", "Natural", "White", "Teak"),
        "Wicker, Teak, Aluminum, Resin, Acacia, Steel, Eucalyptus, Rope",
        "seats", 420.0, "Weather Resistant, Outdoor, Folding, Stackable, Reclining",
        "with Cushions, with Umbrella Hole, Set of 2, with Fire Pit",
        "patio, deck, backyard, poolside",
    ),
    "outdoor": _family(
        "Outdoor / Outdoor Decor & Structures", ("Bronze", "Black", "Gray", "Green", "Brown"),
        "Resin, Metal, Cast Iron, Steel, Stone, Concrete, Cedar, Polyethylene",
        "generic", 140.0, "Weather Resistant, Solar, Outdoor, Rustproof, Handcrafted",
        "with Lid, with Lock, with Stand, Set of 2",
        "garden, yard, patio, porch",
    ),
    "outdoor_play": _family(
        "Baby & Kids / Outdoor Play", ("Multi-Color", "Red", "Blue", "Pink", "Green", "Natural"),
        "Solid Wood, Plastic, Cedar, Polyester, Steel",
        "generic", 180.0, "Kids, Outdoor, Portable, Foldable, Battery Powered",
        "with Carry Bag, with Remote Control, with Flag",
        "backyard, playroom, lawn",
    ),
    "lighting": _family(
        "Lighting / Indoor Lighting", _FINISH_COLOURS,
        "Metal, Glass, Crystal, Brass, Rattan, Fabric, Iron, Wood",
        "lights", 190.0, "Dimmable, LED, Drum, Globe, Geometric, Shaded, Sputnik, Linear",
        "with Shade, with Remote, with Crystal Accents, Set of 2",
        "dining room, kitchen, foyer, living room, bedroom",
    ),
    "outdoor_lighting": _family(
        "Lighting / Outdoor Lighting", ("Black", "Bronze", "Silver", "White", "Warm White"),
        "Aluminum, Glass, Steel, Plastic, Copper",
        "count", 70.0, "Solar, Dusk to Dawn, Motion Sensor, Waterproof, LED",
        "with Timer, Pack of 4, with Remote",
        "porch, patio, garden path, deck",
    ),
    "rugs": _family(
        "Rugs", _TEXTILE_COLOURS,
        "Wool, Jute, Polypropylene, Cotton, Polyester, Sisal, Viscose",
        "rug", 160.0, "Oriental, Geometric, Abstract, Distressed, Washable, Shag, Hand Woven",
        "Indoor/Outdoor, Machine Washable",
        "living room, bedroom, hallway, kitchen",
    ),
    "bath_textile": _family(
        "Bed & Bath / Bath Linens", _TEXTILE_COLOURS,
        "Cotton, Microfiber, Memory Foam, Bamboo, Chenille, Polyester",
        "generic", 30.0, "Non-Slip, Absorbent, Quick Dry, Waffle Weave, Plush",
        "with Hooks, Set of 2, with Liner",
        "bathroom, guest bath",
    ),
    "bath": _family(
        "Bed & Bath / Bathroom Accessories", _FINISH_COLOURS,
        "Stainless Steel, Ceramic, Resin, Glass, Brass, Zinc",
        None, 35.0, "Wall Mounted, Freestanding, Rustproof, Adhesive",
        "Set of 2, with Shelf, with Hooks",
        "bathroom, powder room",
    ),
    "bath_fixture": _family(
        "Home Improvement / Bathroom Fixtures", _FINISH_COLOURS,
        "Brass, Stainless Steel, Zinc, Glass, Acrylic, Cast Iron",
        None, 260.0, "Widespread, Thermostatic, High Pressure, Frameless, Freestanding",
        "with Drain Assembly, with Valve, with Handheld",
        "bathroom, master bath",
    ),
    "vanity": _family(
        "Home Improvement / Bathroom Vanities", _WOOD_COLOURS,
        "Solid Wood, MDF, Plywood, Marble Top, Quartz Top, Ceramic Top",
        "vanity", 640.0, "Single, Double, Freestanding, Floating, Wall Mounted",
        "with Top, with Mirror, with Ceramic Sink, Base Only",
        "bathroom, master bath, powder room",
    ),
    "hardware": _family(
        "Home Improvement / Hardware", _FINISH_COLOURS,
        "Zinc, Brass, Stainless Steel, Iron, Aluminum, Ceramic",
        "count", 20.0, "Solid, Modern, Classic, Heavy Duty, Knurled",
        "with Screws, Pack of 10, Multipack",
        "kitchen, bathroom, bedroom",
    ),
    "building": _family(
        "Home Improvement / Building Materials", _DECOR_COLOURS,
        "Porcelain, Ceramic, Glass, Polyurethane, Vinyl, Solid Wood, Paper",
        "generic", 90.0, "Peel and Stick, Matte, Glossy, Textured, Unfinished, Primed",
        "per Sq. Ft., per Roll, per Piece",
        "kitchen, bathroom, living room, hallway",
    ),
    "kitchen_fixture": _family(
        "Home Improvement / Kitchen", _FINISH_COLOURS,
        "Stainless Steel, Brass, Fireclay, Granite Composite, Copper, Cast Iron",
        None, 330.0, "Pull Down, Touchless, Undermount, Ducted, Commercial Style",
        "with Sprayer, with Soap Dispenser, with Grid",
        "kitchen",
    ),
    "appliance": _family(
        "Appliances", _APPLIANCE_COLOURS,
        "Stainless Steel, Plastic, Aluminum, Enamel",
        "cuft", 680.0, "Energy Star, Smart, High Efficiency, Compact, Programmable",
        "with Steam, with Ice Maker, with Milk Frother",
        "kitchen, laundry room",
    ),
    "kitchenware": _family(
        "Kitchen & Tabletop / Kitchen Essentials", _DECOR_COLOURS,
        "Stainless Steel, Cast Iron, Nonstick, Ceramic, Silicone, Glass, Bamboo, Plastic",
        None, 40.0, "Nonstick, Dishwasher Safe, Heat Resistant, Airtight, Stackable",
        "with Lid, with Handles, Set of 3, Set of 2",
        "kitchen, pantry",
    ),
    "tabletop": _family(
        "Kitchen & Tabletop / Tabletop", _DECOR_COLOURS,
        "Stoneware, Porcelain, Glass, Ceramic, Melamine, Bamboo, Crystal, Stainless Steel",
        "set", 45.0, "Handmade, Dishwasher Safe, Microwave Safe, Reactive Glaze, Gold Rimmed",
        "Service for 4, with Gift Box",
        "dining room, kitchen, bar",
    ),
    "decor": _family(
        "Decor & Pillows / Decorative Accents", _DECOR_COLOURS,
        "Ceramic, Glass, Metal, Wood, Resin, Polyester, Silk, Plastic",
        "generic", 45.0, "Handcrafted, Decorative, Tabletop, Potted, Artificial",
        "Set of 2, Set of 3, with Pot",
        "living room, mantel, entryway, bedroom",
    ),
    "wall_decor": _family(
        "Decor & Pillows / Wall Decor", _DECOR_COLOURS,
        "Canvas, Paper, Metal, Wood, Glass, Resin, MDF",
        "art", 95.0, "Framed, Oversized, Beveled, Gallery Wrapped, Floating",
        "Set of 3, Set of 2, on Canvas, with Frame",
        "living room, bedroom, hallway, office",
    ),
    "textile": _family(
        "Decor & Pillows / Pillows & Textiles", _TEXTILE_COLOURS,
        "Cotton, Linen, Polyester, Velvet, Faux Fur, Outdoor Fabric, Wool",
        "pillow", 35.0, "Blackout, Reversible, Embroidered, Tasseled, Textured, Outdoor",
        "Set of 2, with Insert, Single Panel, with Ties",
        "living room, bedroom, patio",
    ),
    "seasonal": _family(
        "Holiday Decor", ("Green", "White", "Flocked White", "Gold", "Red"),
        "PVC, PE, Eucalyptus, Pine, Berries, Metal",
        "generic", 110.0, "Pre-Lit, Flocked, Artificial, Hinged, Slim",
        "with Lights, with Stand, with Pinecones",
        "entryway, front door, living room",
    ),
    "pets": _family(
        "Pet", ("Black", "White", "Gray", "Natural", "Blue", "Silver"),
        "Stainless Steel, Ceramic, Wood, Plastic, Metal",
        "generic", 55.0, "Elevated, Non-Slip, Automatic, Adjustable, Freestanding",
        "with Stand, with Door, Set of 2",
        "kitchen, living room, hallway",
    ),
    "fitness": _family(
        "Sports & Fitness", ("Black", "Gray", "Natural", "Red", "Blue"),
        "Steel, Cast Iron, Hemlock, Cedar, Rubber, Neoprene",
        "generic", 140.0, "Adjustable, Wall Mounted, Hex, Freestanding, Far Infrared",
        "with Rack, with Hooks, Pair",
        "garage, home gym, basement",
    ),
    "electronics": _family(
        "Home Improvement / Electrical & Tech", ("Black", "White", "Silver", "Gray"),
        "Aluminum, Steel, Plastic, Glass, Fabric",
        "generic", 60.0, "Smart, Dimmable, Hardwired, Battery Operated, Motorized",
        "with Remote, Pack of 4, with Voice Alerts",
        "home office, living room, home theater",
    ),
}
# fmt: on


# Closely related product types: a product of a related class is a Partial match.
_RELATED_GROUPS: tuple[tuple[str, ...], ...] = (
    ("Sofas", "Sectionals", "Living Room Sets", "Patio Sofas", "Daybeds & Guest Beds"),
    ("Sofas", "Indoor Chaise Lounges"),
    ("Accent Chairs", "Recliners", "Massage Chairs", "Indoor Chaise Lounges", "Kids Chairs",
     "Office Chairs", "Dining Chairs", "Patio Lounge Chairs"),
    ("Bar Stools", "Patio Bar Stools", "Accent Stools"),
    ("Accent Stools", "Ottomans", "Benches"),
    ("Coffee & Cocktail Tables", "End Tables", "Sofa & Console Tables", "Living Room Table Sets",
     "Plant & Telephone Tables"),
    ("Dining Tables", "Dining Table Sets", "Folding Tables", "Kitchen Islands",
     "Patio Dining Sets"),
    ("Beds", "Bed Frames", "Kids Beds", "Daybeds & Guest Beds", "Adjustable Beds", "Headboards"),
    ("Foam and Latex Mattresses", "Innerspring Mattresses", "Mattress Toppers and Pads",
     "Mattress Covers and Protectors"),
    ("Bedding Sets", "Sheets And Sheet Sets", "Crib Bedding Sets", "Bed Accessories"),
    ("Vanities", "Vanity Bases"),
    ("Makeup Vanities", "Vanities", "Desks", "Kids Desks"),
    ("Chandeliers", "Pendant Lights", "Flush Mount Lighting", "Ceiling Fans"),
    ("Wall Sconces", "Vanity Lighting", "Outdoor Wall Lights"),
    ("Outdoor Lanterns & Lamps", "Landscape Lighting", "String Lights", "Outdoor Wall Lights"),
    ("Table Lamps", "Lighting Shades", "Light Bulbs", "Lighting Accessories"),
    ("Area Rugs", "Bath Rugs & Mats", "Kitchen Mats", "Door Mats"),
    ("Wall Art", "Wall Décor", "Kids Wall Décor", "Outdoor Wall Decor", "Wall Clocks",
     "Wall & Accent Mirrors"),
    ("Decorative Objects", "Vases, Urns, Jars, & Bottles", "Candle Holders", "Decorative Trays",
     "Picture Frames", "Faux Florals", "Faux Plants and Trees"),
    ("Bathroom Sink Faucets", "Kitchen Faucets", "Shower Faucets & Systems", "Shower Heads"),
    ("Cabinet and Drawer Knobs", "Cabinet and Drawer Pulls", "Door Knobs", "Door Levers"),
    ("Bookcases", "Shelving & Racks", "Wall Mounted Shelves", "Storage Drawers"),
    ("Dressers & Chests", "Nightstands", "Armoires & Wardrobes", "Accent Chests / Cabinets",
     "Jewelry Armoires"),
    ("Sideboards & Buffets", "Accent Chests / Cabinets", "Bars & Bar Sets", "Pantry Cabinets",
     "TV Stands & Entertainment Centers"),
    ("Outdoor Conversation Sets", "Patio Dining Sets", "Patio Bar Sets",
     "Uniters Outdoor Furniture", "Patio Sofas", "Patio Lounge Chairs", "Patio Chaise Lounges",
     "Patio Rockers & Gliders"),
    ("Patio Chaise Lounges", "Indoor Chaise Lounges"),
    ("Patio Bar Sets", "Bars & Bar Sets", "Dining Table Sets"),
    ("Dining Bowls", "Plates & Saucers", "Serving Dishes & Platters", "Specialty Serving",
     "Flatware Serving Pieces"),
    ("Washing Machines", "Dryers"),
    ("Curtains & Drapes", "Curtain Hardware & Accessories"),
    ("Shower Curtains", "Shower Curtain Hooks and Accessories", "Shower & Tub Accessories",
     "Bath Accessories"),
    ("Garden Statues", "Garden Accents", "Fountains", "Planters"),
    ("Hampers & Baskets", "Boxes, Bins, Baskets, & Buckets", "Laundry Accessories & Storage"),
    ("Furniture Cushions", "Accent Pillows", "Chair Accessories", "Furniture Covers"),
    ("Christmas Trees", "Wreaths", "Faux Plants and Trees"),
    ("Coat Racks and Hooks", "Towel & Robe Hooks", "Shoe Storage", "Benches"),
    ("Office Storage Cabinets", "Storage Drawers", "Accent Chests / Cabinets"),
    ("Carts & Stands", "Kitchen Islands"),
)  # fmt: skip

# How shoppers write attribute values: each canonical value -> the words they type.
_QUERY_FORMS: dict[str, tuple[str, ...]] = {
    "Gray": ("grey", "gray", "light grey"),
    "Charcoal": ("charcoal", "dark grey", "dark gray"),
    "Navy": ("navy", "navy blue", "dark blue"),
    "Ivory": ("ivory", "off white", "cream"),
    "Cream": ("cream", "off white"),
    "Beige": ("beige", "tan", "neutral"),
    "Multi-Color": ("colorful", "multicolor"),
    "Brushed Nickel": ("brushed nickel", "nickel", "satin nickel"),
    "Satin Nickel": ("satin nickel", "nickel"),
    "Oil Rubbed Bronze": ("oil rubbed bronze", "bronze", "orb"),
    "Polished Brass": ("brass", "gold"),
    "Brushed Gold": ("gold", "brushed gold", "brass"),
    "Matte Black": ("black", "matte black"),
    "Genuine Leather": ("leather", "real leather"),
    "Faux Leather": ("faux leather", "vegan leather", "pu leather"),
    "Solid Wood": ("wood", "solid wood", "wooden", "real wood"),
    "Manufactured Wood": ("wood", "wooden"),
    "Reclaimed Wood": ("reclaimed wood", "rustic wood"),
    "Polypropylene": ("polypropylene", "synthetic"),
    "Stainless Steel": ("stainless steel", "stainless"),
    "Black Stainless": ("black stainless",),
    "Memory Foam": ("memory foam", "foam"),
    "Gel Memory Foam": ("gel memory foam", "cooling foam"),
    "Mid-Century Modern": ("mid century modern", "mid century", "mcm", "midcentury"),
    "Farmhouse": ("farmhouse", "rustic farmhouse", "country"),
    "Bohemian": ("boho", "bohemian"),
    "Scandinavian": ("scandinavian", "nordic", "scandi"),
    "Coastal": ("coastal", "beach", "nautical"),
    "Glam": ("glam", "glamorous"),
    "California King": ("california king", "cal king"),
    "Counter Height": ("counter height", "counter"),
    "Bar Height": ("bar height", "30 inch"),
}

_TYPO_RATE = 0.08
# Words shoppers add that say nothing about the product type: before and after it.
_EXTRA_BEFORE = ("cheap", "best", "affordable", "nice", "sturdy", "cute", "durable", "new")
_EXTRA_AFTER = ("for apartment", "on sale", "for home", "for small space", "clearance", "sale")
_SYLLABLE_START = (
    "Al", "Bel", "Car", "Dar", "El", "Fen", "Gar", "Hal", "Is", "Jar", "Kel", "Lan", "Mar",
    "Nor", "Or", "Pem", "Quin", "Ros", "Sal", "Tam", "Ul", "Ver", "Wes", "Yar", "Zan", "Ash",
    "Brook", "Clay", "Dun", "Ever", "Fair", "Glen", "Har", "Iv", "Kings", "Lau", "Mer",
    "North", "Oak", "Pres", "Red", "Stan", "Thorn", "Win", "Wil", "Ham", "Ran", "Sel",
)  # fmt: skip
_SYLLABLE_END = (
    "cott", "ley", "ton", "ford", "wood", "more", "by", "dale", "ville", "wick", "ham",
    "ridge", "field", "stead", "son", "ina", "ara", "ette", "ian", "o", "ell", "worth", "ing",
    "ard", "en", "a",
)  # fmt: skip
_BRAND_SUFFIXES = (
    "Hill", "Design", "Home", "Row", "Studio", "Co.", "Living", "Furnishings", "Lane",
    "Manor", "Collective", "House", "Works", "Trading Co.", "& Co.", "Interiors", "Loft",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _ClassSpec:
    """Everything the generator needs to know about one product class."""

    name: str
    family: _Family
    title_nouns: tuple[str, ...]
    query_nouns: tuple[str, ...]
    sizes: tuple[str, ...]
    category: str


def _singular(word: str) -> str:
    lowered = word.lower()
    if lowered.endswith(("ss", "us")):
        return word
    if lowered.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if lowered.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if lowered.endswith("s") and len(word) > 3:
        return word[:-1]
    return word


def _nouns_from_class_name(name: str) -> tuple[str, ...]:
    """Fallback for a class the table does not know: its parts, singular and lower-case."""
    parts = re.split(r"\s*(?:,|&|/|\band\b)\s*", name, flags=re.IGNORECASE)
    nouns = []
    for part in parts:
        words = part.strip().split()
        if words:
            nouns.append(" ".join([*words[:-1], _singular(words[-1])]).lower())
    return tuple(dict.fromkeys(n for n in nouns if n)) or (name.lower(),)


def _guess_family(name: str) -> str:
    lowered = name.lower()
    for keyword, family in (
        ("patio", "outdoor_furniture"), ("outdoor", "outdoor"), ("garden", "outdoor"),
        ("light", "lighting"), ("lamp", "lighting"), ("rug", "rugs"), ("bed", "beds"),
        ("mattress", "mattress"), ("sofa", "seating"), ("chair", "seating"),
        ("table", "tables"), ("kid", "kids"), ("bath", "bath"), ("shower", "bath"),
        ("kitchen", "kitchenware"), ("wall", "wall_decor"), ("storage", "storage"),
    ):  # fmt: skip
        if keyword in lowered:
            return family
    return "decor"


def _parse_class_table() -> dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str | None]]:
    table = {}
    for line in _CLASS_TABLE.strip().splitlines():
        fields = [f.strip() for f in line.split(";")]
        nouns = tuple(n.strip() for n in fields[2].split(",") if n.strip())
        query_nouns = tuple(n.strip() for n in fields[3].split(",") if n.strip())
        size_set = fields[4] if len(fields) > 4 else None
        table[fields[0]] = (fields[1], nouns, query_nouns, size_set)
    return table


_KNOWN_CLASSES = _parse_class_table()


def _class_spec(name: str) -> _ClassSpec:
    if name in _KNOWN_CLASSES:
        family_key, nouns, query_nouns, size_override = _KNOWN_CLASSES[name]
    else:
        family_key, size_override = _guess_family(name), None
        nouns = query_nouns = _nouns_from_class_name(name)
    family = _FAMILIES[family_key]
    size_set = size_override or family.size_set
    sizes = () if size_set in (None, "none") else _SIZE_SETS[size_set]
    return _ClassSpec(name, family, nouns, query_nouns, sizes, f"{family.path} / {name}")


def class_vocabulary(product_class: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(nouns titles use, words shoppers use) for a class: what keyword search must bridge."""
    spec = _class_spec(product_class)
    return spec.title_nouns, spec.query_nouns


def load_classes(classes_path: Path | None = None) -> list[str]:
    """The class taxonomy: one class per line (default: WANDS's 188 classes)."""
    path = classes_path or shared_data_dir() / "wands" / "classes.txt"
    classes = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [c for c in classes if c]


def related_classes(product_class: str) -> frozenset[str]:
    """Closely related product types; a product of one of them is a Partial match."""
    return _RELATED.get(product_class, frozenset())


def _build_related() -> dict[str, frozenset[str]]:
    related: dict[str, set[str]] = {}
    for group in _RELATED_GROUPS:
        for name in group:
            related.setdefault(name, set()).update(g for g in group if g != name)
    return {name: frozenset(others) for name, others in related.items()}


_RELATED = _build_related()


def judge(
    query_class: str,
    query_attributes: dict[str, str],
    product_class: str,
    product_attributes: dict[str, str],
) -> str:
    """WANDS's rule: right type and every named attribute matches -> Exact; right type
    with a mismatch, or a closely related type -> Partial; otherwise Irrelevant."""
    if product_class == query_class:
        for key, value in query_attributes.items():
            if product_attributes.get(key) != value:
                return PARTIAL
        return EXACT
    if product_class in related_classes(query_class):
        return PARTIAL
    return IRRELEVANT


@dataclass(slots=True)
class SyntheticStore:
    """A generated store: products, queries and graded judgments.

    ``query_attributes`` keeps each query's target (query_id -> the attributes it
    names, e.g. {"colour": "Gray", "material": "Velvet"}); its class is the query's
    ``query_class``. WANDS files cannot carry it; it is here for tests and analysis.
    """

    products: list[Product]
    queries: list[Query]
    labels: list[Label]
    seed: int = 7
    query_attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dataset(self) -> Dataset:
        """The store in the shape the loaders return, ready for the evaluation harness."""
        return Dataset(
            queries=list(self.queries),
            products=list(self.products),
            labels=labels_to_dict(self.labels),
            name=f"synthetic-{len(self.products)}-seed{self.seed}",
        )


class _Names:
    """Brand and product-line names made of syllables, so no real brand is copied."""

    def __init__(self, rng: random.Random, n_brands: int, n_lines: int) -> None:
        self.brands = self._unique(rng, n_brands, self._brand)
        self.lines = self._unique(rng, n_lines, self._word)

    @staticmethod
    def _word(rng: random.Random) -> str:
        return rng.choice(_SYLLABLE_START) + rng.choice(_SYLLABLE_END)

    @classmethod
    def _brand(cls, rng: random.Random) -> str:
        if rng.random() < 0.25:
            return f"{cls._word(rng)} {cls._word(rng)}"
        return f"{cls._word(rng)} {rng.choice(_BRAND_SUFFIXES)}"

    @staticmethod
    def _unique(rng: random.Random, n: int, make: Callable[[random.Random], str]) -> list[str]:
        seen: dict[str, None] = {}
        for _ in range(n * 20):
            if len(seen) >= n:
                break
            seen.setdefault(make(rng), None)
        return list(seen)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _title_case(text: str) -> str:
    return " ".join(
        w if w[:1].isupper() or w[:1].isdigit() else w.capitalize() for w in text.split()
    )


_N_BRANDS = 2000
_N_PRODUCT_LINES = 1500


class _ProductFactory:
    """Makes products one at a time from one seeded stream (so 1M never sit in memory)."""

    def __init__(self, classes: list[str], seed: int) -> None:
        self.specs = [_class_spec(name) for name in classes]
        setup = random.Random(f"synthetic-store/{seed}/setup")
        # Real catalogs are unbalanced: a few classes hold many products.
        weights = [setup.lognormvariate(0.0, 0.8) for _ in self.specs]
        self.cum_weights = list(_accumulate(weights))
        self.class_price_factor = [setup.lognormvariate(0.0, 0.35) for _ in self.specs]
        # Fixed name pools (not scaled by size) keep a smaller store a prefix of a larger one.
        self.names = _Names(setup, n_brands=_N_BRANDS, n_lines=_N_PRODUCT_LINES)
        self.rng = random.Random(f"synthetic-store/{seed}/products")

    def make(self, index: int) -> tuple[Product, int]:
        """The product with this index, and the index of its class."""
        rng = self.rng
        class_index = bisect.bisect_right(self.cum_weights, rng.random() * self.cum_weights[-1])
        class_index = min(class_index, len(self.specs) - 1)
        spec = self.specs[class_index]
        family = spec.family
        colour = rng.choice(family.colours)
        material = rng.choice(family.materials)
        style = rng.choice(_STYLES)
        size = rng.choice(spec.sizes) if spec.sizes else ""
        brand = rng.choice(self.names.brands)
        line = rng.choice(self.names.lines)
        noun = rng.choice(spec.title_nouns)

        words: list[str] = []
        if rng.random() < 0.25:
            words.append(brand)
        if rng.random() < 0.7:
            words.append(line)
        shown: dict[str, str] = {}
        for key, value, rate in (
            ("size", size, 0.3), ("style", style, 0.15), ("colour", colour, 0.3),
            ("material", material, 0.35),
        ):  # fmt: skip
            if value and rng.random() < rate:
                shown[key] = value
                words.append(value)
        if rng.random() < 0.4:
            words.append(rng.choice(family.adjectives))
        words.append(_title_case(noun))
        if rng.random() < 0.3:
            words.append(rng.choice(family.suffixes))
        title = " ".join(words)

        room = rng.choice(family.rooms)
        sentences = [
            rng.choice(
                (
                    f"This {noun} brings {_article(style)} {style.lower()} look to your {room}.",
                    f"{_article(style).capitalize()} {style.lower()} {noun} made for the {room}.",
                    f"Designed for the {room}, this {noun} keeps things simple.",
                    f"The {line} {noun} from {brand} suits any {room}.",
                )
            )
        ]
        details = []
        if "material" not in shown or rng.random() < 0.5:
            details.append(f"is made of {material.lower()}")
        if "colour" not in shown or rng.random() < 0.5:
            details.append(f"comes in a {colour.lower()} finish")
        if details and rng.random() < 0.8:
            sentences.append(f"It {' and '.join(details)}.")
        if size and rng.random() < 0.5:
            sentences.append(f"Size: {size}.")
        description = " ".join(sentences)

        attributes = {"colour": colour, "material": material, "style": style, "brand": brand}
        if size:
            attributes["size"] = size
        price = family.price_median * self.class_price_factor[class_index]
        price *= math.exp(0.55 * rng.gauss(0.0, 1.0))
        price = round(max(price, 2.0), 0) - (0.01 if rng.random() < 0.6 else 0.0)
        if rng.random() < 0.2:
            rating, reviews = 0.0, 0
        else:
            rating = round(min(5.0, max(1.0, rng.gauss(4.3, 0.55))), 1)
            reviews = 1 + int(rng.lognormvariate(2.3, 1.4))
        product = Product(
            product_id=str(index),
            title=title,
            description=description,
            product_class=spec.name,
            category=spec.category,
            attributes=attributes,
            price=round(price, 2),
            rating=rating,
            review_count=reviews,
        )
        return product, class_index


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def iter_products(
    n_products: int = 20000, seed: int = 7, classes_path: Path | None = None
) -> Iterator[Product]:
    """The store's products one by one, in order: streams a catalog of any size."""
    factory = _ProductFactory(load_classes(classes_path), seed)
    for index in range(n_products):
        yield factory.make(index)[0]


class _CatalogIndex:
    """What queries and judgments need of each product, compactly (class and attributes)."""

    def __init__(self, specs: list[_ClassSpec]) -> None:
        self.specs = specs
        self.class_of: list[int] = []
        self.attrs: list[tuple[str, ...]] = []
        self.by_class: list[list[int]] = [[] for _ in specs]
        self._interned: dict[str, str] = {}

    def add(self, product: Product, class_index: int) -> None:
        intern = self._interned.setdefault
        self.class_of.append(class_index)
        self.attrs.append(
            tuple(intern(v, v) for v in (product.attributes.get(k, "") for k in ATTRIBUTE_KEYS))
        )
        self.by_class[class_index].append(len(self.class_of) - 1)

    def attributes(self, index: int) -> dict[str, str]:
        return {k: v for k, v in zip(ATTRIBUTE_KEYS, self.attrs[index], strict=True) if v}


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.random()
    if kind < 0.4:
        return word[:i] + word[i + 1 :]
    if kind < 0.7:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i] + word[i:]


def _query_form(key: str, value: str, rng: random.Random) -> str:
    if value in _QUERY_FORMS:
        return rng.choice(_QUERY_FORMS[value])
    text = value.lower()
    text = re.sub(r"(\d+)' x (\d+)'", r"\1x\2", text)
    text = text.replace("''", rng.choice((" inch", "in", "''"))).replace("'", " ft")
    return re.sub(r"\s+", " ", text).strip()


# Which attributes a shopper names, and how often.
_ATTRIBUTE_WEIGHTS = {"colour": 0.35, "material": 0.25, "style": 0.2, "size": 0.2}


def _make_queries(
    index: _CatalogIndex,
    n_queries: int,
    seed: int,
    stream: str = "queries",
    exclude: frozenset[str] = frozenset(),
    id_prefix: str = "",
) -> tuple[list[Query], dict[str, dict[str, str]]]:
    """Queries drawn from the rng stream ``stream`` (another stream gives other queries);
    texts in ``exclude`` are skipped; ids are ``id_prefix`` + a running number."""
    rng = random.Random(f"synthetic-store/{seed}/{stream}")
    populated = [i for i, members in enumerate(index.by_class) if members]
    if not populated:
        return [], {}
    queries: list[Query] = []
    targets: dict[str, dict[str, str]] = {}
    seen: set[str] = set(exclude)
    attempts = 0
    while len(queries) < n_queries and attempts < n_queries * 50:
        attempts += 1
        if rng.random() < 0.5:  # half follow the catalog's mix, half spread over all classes
            class_index = index.class_of[rng.randrange(len(index.class_of))]
        else:
            class_index = rng.choice(populated)
        spec = index.specs[class_index]
        anchor = rng.choice(index.by_class[class_index])
        available = index.attributes(anchor)
        keys = [k for k in ATTRIBUTE_KEYS if k in available]
        n_attributes = rng.choices((0, 1, 2), weights=(0.4, 0.42, 0.18))[0]
        chosen: list[str] = []
        while len(chosen) < min(n_attributes, len(keys)):
            key = rng.choices(keys, weights=[_ATTRIBUTE_WEIGHTS[k] for k in keys])[0]
            if key not in chosen:
                chosen.append(key)
        wanted = {k: available[k] for k in ATTRIBUTE_KEYS if k in chosen}
        pool = spec.query_nouns if rng.random() < 0.75 else spec.title_nouns
        noun = rng.choice(pool).lower()
        before = [_query_form(k, wanted[k], rng) for k in ("style", "size", "colour", "material")
                  if k in wanted]  # fmt: skip
        words = [*before, noun]
        if rng.random() < 0.12:
            if rng.random() < 0.5:
                words = [rng.choice(_EXTRA_BEFORE), *words]
            else:
                words = [*words, rng.choice(_EXTRA_AFTER)]
        text = " ".join(words)
        tokens = text.split()
        if len(tokens) > 5:
            continue
        if rng.random() < _TYPO_RATE:
            j = rng.randrange(len(tokens))
            tokens[j] = _typo(tokens[j], rng)
            text = " ".join(tokens)
        if text in seen:
            continue
        seen.add(text)
        query_id = f"{id_prefix}{len(queries)}"
        queries.append(Query(query_id=query_id, text=text, query_class=spec.name))
        targets[query_id] = wanted
    return queries, targets


# Pool sizes per query: every product of the target class (sampled above this cap),
# a sample of related classes and a random sample of the rest, as WANDS pooled.
_POOL_CLASS_CAP = 1000
_POOL_RELATED = 40
_POOL_RANDOM = 30


def _make_labels(
    index: _CatalogIndex,
    queries: list[Query],
    targets: dict[str, dict[str, str]],
    seed: int,
    stream: str = "labels",
) -> Iterator[Label]:
    rng = random.Random(f"synthetic-store/{seed}/{stream}")
    class_index_of = {spec.name: i for i, spec in enumerate(index.specs)}
    n = len(index.class_of)
    for query in queries:
        assert query.query_class is not None
        target = class_index_of[query.query_class]
        wanted = targets[query.query_id]
        members = index.by_class[target]
        pool = set(
            members if len(members) <= _POOL_CLASS_CAP else rng.sample(members, _POOL_CLASS_CAP)
        )
        related = [
            p
            for name in sorted(related_classes(query.query_class))
            if name in class_index_of
            for p in index.by_class[class_index_of[name]]
        ]
        pool.update(rng.sample(related, min(_POOL_RELATED, len(related))))
        pool.update(rng.randrange(n) for _ in range(min(_POOL_RANDOM, n)))
        for p in sorted(pool):
            label = judge(
                query.query_class,
                wanted,
                index.specs[index.class_of[p]].name,
                index.attributes(p),
            )
            yield Label(query.query_id, str(p), label)


def generate_store(
    n_products: int = 20000,
    n_queries: int = 500,
    seed: int = 7,
    classes_path: Path | None = None,
) -> SyntheticStore:
    """A whole synthetic store in memory; the same arguments always give the same store."""
    factory = _ProductFactory(load_classes(classes_path), seed)
    index = _CatalogIndex(factory.specs)
    products = []
    for i in range(n_products):
        product, class_index = factory.make(i)
        index.add(product, class_index)
        products.append(product)
    queries, targets = _make_queries(index, n_queries, seed)
    labels = list(_make_labels(index, queries, targets, seed))
    return SyntheticStore(products, queries, labels, seed=seed, query_attributes=targets)


def _readme_text(n_products: int, n_queries: int, n_labels: int, seed: int) -> str:
    return (
        "SYNTHETIC DATA - generated by shared.data.synthetic, not real products or shoppers.\n"
        "\n"
        f"seed: {seed}\nproducts: {n_products}\nqueries: {n_queries}\njudgments: {n_labels}\n"
        "\n"
        "Files follow the WANDS format (tab-separated product.csv, query.csv, label.csv).\n"
        "The class taxonomy is WANDS's (Wayfair classes); every product, brand, query and\n"
        "judgment is invented. product_features carries price as 'price:123.45'.\n"
        f"Regenerate: python -m shared.data.synthetic --out DIR --products {n_products} "
        f"--queries {n_queries} --seed {seed}\n"
    )


def _writer(handle: TextIO) -> Any:
    return csv.writer(handle, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def _write_queries_and_labels(
    out_dir: Path, queries: list[Query], labels: Iterator[Label] | list[Label]
) -> int:
    with (out_dir / "query.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(QUERY_COLUMNS)
        for query in queries:
            writer.writerow([query.query_id, query.text, query.query_class or ""])
    count = 0
    with (out_dir / "label.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(LABEL_COLUMNS)
        for count, label in enumerate(labels, start=1):
            writer.writerow([count - 1, label.query_id, label.product_id, label.label])
    return count


def write_wands(store: SyntheticStore, out_dir: Path) -> None:
    """Write the store as WANDS's three files plus a README.txt that says it is synthetic."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "product.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for product in store.products:
            writer.writerow(product_to_wands_row(product))
    n_labels = _write_queries_and_labels(out_dir, store.queries, store.labels)
    (out_dir / "README.txt").write_text(
        _readme_text(len(store.products), len(store.queries), n_labels, store.seed),
        encoding="utf-8",
    )


def write_synthetic_wands(
    out_dir: Path,
    n_products: int = 20000,
    n_queries: int = 500,
    seed: int = 7,
    classes_path: Path | None = None,
    progress: bool = False,
) -> int:
    """Generate and write a store without holding its products in memory (for 1M+).

    Writes byte-for-byte what ``write_wands(generate_store(...))`` writes. Returns the
    number of judgments.
    """
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    factory = _ProductFactory(load_classes(classes_path), seed)
    index = _CatalogIndex(factory.specs)
    with (out_dir / "product.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for i in tqdm(range(n_products), desc="products", unit="p", disable=not progress):
            product, class_index = factory.make(i)
            index.add(product, class_index)
            writer.writerow(product_to_wands_row(product))
    queries, targets = _make_queries(index, n_queries, seed)
    n_labels = _write_queries_and_labels(
        out_dir, queries, _make_labels(index, queries, targets, seed)
    )
    (out_dir / "README.txt").write_text(
        _readme_text(n_products, len(queries), n_labels, seed), encoding="utf-8"
    )
    return n_labels


_TRAINING_QUERY_STREAM = "training-queries"
_TRAINING_LABEL_STREAM = "training-labels"
_EVAL_QUERIES = 500


def write_synthetic_training_store(
    out_dir: Path,
    n_products: int = 20000,
    seed: int = 7,
    n_queries: int = 3000,
    classes_path: Path | None = None,
) -> Path:
    """Write a SYNTHETIC training store for fine-tuning: the demo store's products with
    new queries that never repeat a query of its held-out evaluation set.

    ``product.csv`` is byte-identical to the demo store's (same ``n_products`` and
    ``seed``); the queries come from another rng stream, skip every query text of
    ``generate_store(n_products, 500, seed)`` and have ids prefixed "t"; they are judged
    by the same rule (:func:`judge`) on the same kind of pool. Returns ``out_dir``.
    """
    if n_queries < 1:
        raise ValueError(f"n_queries: must be at least 1, got {n_queries}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    factory = _ProductFactory(load_classes(classes_path), seed)
    index = _CatalogIndex(factory.specs)
    with (out_dir / "product.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = _writer(handle)
        writer.writerow(PRODUCT_COLUMNS)
        for i in range(n_products):
            product, class_index = factory.make(i)
            index.add(product, class_index)
            writer.writerow(product_to_wands_row(product))
    eval_queries, _ = _make_queries(index, _EVAL_QUERIES, seed)
    queries, targets = _make_queries(
        index,
        n_queries,
        seed,
        stream=_TRAINING_QUERY_STREAM,
        exclude=frozenset(q.text for q in eval_queries),
        id_prefix="t",
    )
    labels = _make_labels(index, queries, targets, seed, stream=_TRAINING_LABEL_STREAM)
    n_labels = _write_queries_and_labels(out_dir, queries, labels)
    (out_dir / "README.txt").write_text(
        "SYNTHETIC TRAINING QUERIES - generated by shared.data.synthetic, not real shoppers.\n"
        "\n"
        f"seed: {seed}\nproducts: {n_products}\nqueries: {len(queries)}\n"
        f"judgments: {n_labels}\n"
        "\n"
        "product.csv is byte-identical to the demo store of the same size and seed.\n"
        f"The queries are new (rng stream {_TRAINING_QUERY_STREAM!r}, ids prefixed 't'):\n"
        f"every query text of the held-out evaluation set ({_EVAL_QUERIES} queries) is\n"
        "excluded, so a model trained here can be evaluated on the demo store.\n"
        f"Regenerate: python -m shared.data.synthetic --training --out DIR "
        f"--products {n_products} --queries {n_queries} --seed {seed}\n",
        encoding="utf-8",
    )
    return out_dir


def main(argv: list[str] | None = None) -> None:
    """Command line: write a synthetic store (or a training store) in WANDS format."""
    parser = argparse.ArgumentParser(description="Write a SYNTHETIC demo store in WANDS format.")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--products", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=None, help="default 500 (3000 training)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--classes", type=Path, default=None, help="classes.txt (default WANDS)")
    parser.add_argument(
        "--training",
        action="store_true",
        help="write training queries that exclude the evaluation set's queries",
    )
    args = parser.parse_args(argv)
    if args.training:
        write_synthetic_training_store(
            args.out, args.products, args.seed, args.queries or 3000, args.classes
        )
        print(f"wrote a SYNTHETIC training store to {args.out}")
        return
    args.queries = args.queries or _EVAL_QUERIES
    n_labels = write_synthetic_wands(
        args.out, args.products, args.queries, args.seed, args.classes, progress=True
    )
    print(
        f"wrote {args.products} products, {args.queries} queries, {n_labels} judgments to {args.out}"
    )


if __name__ == "__main__":
    main()
